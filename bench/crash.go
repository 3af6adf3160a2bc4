package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// CrashOptions configure the crash harness.
type CrashOptions struct {
	// Redblack and Hello are the binaries: `redblack up` is the process
	// killed, hello the application released.
	Redblack, Hello string
	Dir             string
	// Kills is how many releases run, each with `redblack up` SIGKILLed
	// once at a random point of it.
	Kills    int
	Seed     uint64
	Progress func(string)
}

// CrashResult is what the harness saw.
type CrashResult struct {
	Kills int
	// KilledIn counts the kills by the phase the release was in.
	KilledIn map[string]int
	// Outcomes counts the releases by how they ended.
	Outcomes map[string]int
	// Recoveries are the times from a kill to `redblack up` ready again.
	Recoveries []time.Duration
	// Violations are the invariants broken, one line each.
	Violations []string
	// Requests, failed while up ran, and failed while it was down (and a
	// second after): the data plane is its own process, which serves on
	// from its last tables while up is dead.
	Requests, Failed, FailedWhileDown int64
	// Unexplained failed while up ran, outside every bad release's window
	// (each one is also a violation).
	Unexplained int64
	// Checks is how many invariant checks ran.
	Checks int
}

// scenario is one kind of release the harness runs.
type scenario struct {
	name  string
	flags []string
	// act is done at a random point of the release: a rollback, a switch,
	// an abort by hand ("" for none).
	act string
	// phases are where the kill may land: one is picked at random, and up
	// dies as the record enters it (plus up to 150 ms).
	phases []release.Phase
}

var scenarios = []scenario{
	{name: "healthy", phases: []release.Phase{release.PhaseAccepted, release.PhaseCanary, release.PhaseLaunching, release.PhaseSwitching, release.PhaseBaking}},
	{name: "bake failure", flags: []string{"--fail-after", "2s"}, // inside the 5 s bake
		phases: []release.Phase{release.PhaseLaunching, release.PhaseBaking, release.PhaseRollingBack}},
	{name: "canary failure", flags: []string{"--error-rate", "0.3"}, phases: []release.Phase{release.PhaseCanary, release.PhaseRollingBack}},
	{name: "manual rollback", act: "rollback", phases: []release.Phase{release.PhaseCanary, release.PhaseBaking, release.PhaseRollingBack}},
	{name: "abort", act: "abort", phases: []release.Phase{release.PhaseAccepted, release.PhaseCanary, release.PhaseBaking}},
	{name: "manual switch after", act: "switch", phases: []release.Phase{release.PhaseSwitching, release.PhaseBaking, release.PhaseCompleted}},
}

// crashSpec is hello with short phases, so a kill can land in each.
func crashSpec(hello string) spec.Service {
	return NewSpec("hello", "crash", hello).Bake(5 * time.Second).RollbackDeadline(20 * time.Second).Build()
}

// up is one `redblack up` process.
type up struct {
	cmd *exec.Cmd
	// ready is its "redblack ready" line
	ready string
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startUp starts `redblack up` on data and the addresses given (more
// flags in extra), its log into log, and waits for its ready line.
func startUp(redblack, data, natsAddr, httpAddr string, log *os.File, extra ...string) (*up, error) {
	cmd := exec.Command(redblack, append([]string{"up", "--data", data, "--nats", natsAddr, "--http", httpAddr, "--admin", "", "--ui", "", "--log-level", "warn"}, extra...)...)
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "redblack ready") {
				ready <- sc.Text()
			}
		}
		ready <- ""
	}()
	select {
	case line := <-ready:
		if line != "" {
			return &up{cmd: cmd, ready: line}, nil
		}
	case <-time.After(60 * time.Second):
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, fmt.Errorf("redblack up was not ready within 60s (log %s)", log.Name())
}

func (u *up) kill() {
	_ = u.cmd.Process.Signal(syscall.SIGKILL)
	_ = u.cmd.Wait()
}

func (u *up) stop() {
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	t := time.AfterFunc(20*time.Second, func() { _ = u.cmd.Process.Kill() })
	_ = u.cmd.Wait()
	t.Stop()
}

// Crash runs the harness: releases of every scenario under load through the
// router, `redblack up` SIGKILLed once at a random point of each (seeded)
// and started again on the same data, and after each release the
// invariants checked: it ended within its deadlines; the lock is free;
// exactly one group has all the traffic and it has instances up; no
// canary or baseline group, no group beyond the kept one, no instance
// process nobody owns; one terminal event in the audit trail.
func Crash(ctx context.Context, o CrashOptions) (CrashResult, error) {
	h := &crashRun{ctx: ctx, o: o, res: CrashResult{KilledIn: map[string]int{}, Outcomes: map[string]int{}}}
	defer h.close()
	if err := h.start(); err != nil {
		return h.res, err
	}
	// failures while up is dead (and a second after) are counted apart:
	// the data plane serves on from its last tables, but a bad group's
	// failures then go on until up is back to roll it back
	// failures while a bad release is in flight (from its request to a
	// second after its end) are its group's, inside its detection window;
	// any other failure while up runs is unexplained: a violation
	load := StartLoad(h.httpAddr, "hello", 2, nil, func(error, int) {
		switch {
		case h.isDown.Load():
			h.whileDown.Add(1)
			time.Sleep(5 * time.Millisecond) // no spinning on a refused port
		case h.inBad.Load():
			h.outside.Add(1)
		default:
			h.outside.Add(1)
			h.unexplained.Add(1)
		}
	})
	r := rand.New(rand.NewPCG(o.Seed, 7))
	for i := range o.Kills {
		if err := h.release(i, r); err != nil {
			return h.res, err
		}
	}
	ok, failed, _ := load.Stop()
	h.res.Requests, h.res.Failed, h.res.FailedWhileDown, h.res.Unexplained = ok+failed, h.outside.Load(), h.whileDown.Load(), h.unexplained.Load()
	h.u.stop()
	h.u = nil
	if n := testkit.CountProcesses(o.Hello); n != 0 {
		h.violate("%d hello processes left after up stopped", n)
	}
	return h.res, nil
}

// crashRun is one run of the crash harness.
type crashRun struct {
	ctx                context.Context
	o                  CrashOptions
	res                CrashResult
	natsAddr, httpAddr string
	logf               *os.File
	u                  *up
	planes             []int // the data plane's pids, for a run that fails with up dead
	nc                 *nats.Conn
	js                 jetstream.JetStream
	releases           release.Store
	routesKV           jetstream.KeyValue
	instances          jetstream.KeyValue
	svc                spec.Service

	isDown, inBad                   atomic.Bool
	whileDown, outside, unexplained atomic.Int64
}

func (h *crashRun) progress(f string, a ...any) {
	if h.o.Progress != nil {
		h.o.Progress(fmt.Sprintf(f, a...))
	}
}

func (h *crashRun) violate(f string, a ...any) {
	h.res.Violations = append(h.res.Violations, fmt.Sprintf(f, a...))
	h.progress("  VIOLATION: "+f, a...)
}

// start starts `redblack up`, connects to it as its admin, applies hello
// and releases its v1.
func (h *crashRun) start() error {
	np, err := freePort()
	if err != nil {
		return err
	}
	hp, err := freePort()
	if err != nil {
		return err
	}
	h.natsAddr, h.httpAddr = fmt.Sprintf("127.0.0.1:%d", np), fmt.Sprintf("127.0.0.1:%d", hp)
	if h.logf, err = os.Create(filepath.Join(h.o.Dir, "up.log")); err != nil {
		return err
	}
	if err := h.startUp(); err != nil {
		return err
	}
	// up writes its admin creds into the data directory before it serves
	h.nc, err = nats.Connect("nats://"+h.natsAddr, nats.UserCredentials(filepath.Join(h.o.Dir, "data", "creds", "admin.creds")), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return err
	}
	h.js, _ = jetstream.New(h.nc)
	kvOf := func(name string) (jetstream.KeyValue, error) {
		c, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		defer cancel()
		return h.js.KeyValue(c, name)
	}
	services, err := kvOf(topology.BucketServices)
	if err != nil {
		return err
	}
	relKV, err := kvOf(topology.BucketReleases)
	if err != nil {
		return err
	}
	if h.routesKV, err = kvOf(topology.BucketRoutes); err != nil {
		return err
	}
	if h.instances, err = kvOf(topology.BucketInstances); err != nil {
		return err
	}
	h.releases = release.Store{KV: relKV}
	h.svc = crashSpec(h.o.Hello)
	if _, err := spec.Apply(h.ctx, services, h.svc); err != nil {
		return err
	}
	h.svc.Default()
	id, err := h.request("v1", nil)
	if err != nil {
		return err
	}
	if r, ok := h.ended(id, 90*time.Second); !ok || r.Phase != release.PhaseCompleted {
		return fmt.Errorf("v1 did not complete: %s", r.Phase)
	}
	return nil
}

// startUp starts `redblack up` on the run's data and notes its data plane.
func (h *crashRun) startUp() error {
	u, err := startUp(h.o.Redblack, filepath.Join(h.o.Dir, "data"), h.natsAddr, h.httpAddr, h.logf)
	if err != nil {
		return err
	}
	h.u = u
	if pid, _, err := dataPlaneOf(u.ready); err == nil {
		h.planes = append(h.planes, pid)
	}
	return nil
}

// close stops everything the run started.
func (h *crashRun) close() {
	if h.nc != nil {
		h.nc.Close()
	}
	if h.u != nil {
		h.u.stop()
	}
	killDataPlanes(h.o.Redblack, h.planes)
	testkit.KillAll(h.o.Hello)
	if h.logf != nil {
		h.logf.Close()
	}
}

func (h *crashRun) request(version string, flags []string) (string, error) {
	c, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	return requestHello(c, h.js, "crash", h.o.Hello, version, flags...)
}

// ended waits until the release's record is terminal (a rollback after
// completion is not part of any scenario: completed is the end here).
func (h *crashRun) ended(id string, limit time.Duration) (release.Record, bool) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && h.ctx.Err() == nil {
		c, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		r, _, err := h.releases.Get(c, id)
		cancel()
		if err == nil && r.Phase.Final() {
			return r, true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return release.Record{}, false
}

// phaseOf is release id's phase ("" when it cannot be read now).
func (h *crashRun) phaseOf(id string, limit time.Duration) release.Phase {
	c, cancel := context.WithTimeout(h.ctx, limit)
	defer cancel()
	rec, _, _ := h.releases.Get(c, id)
	return rec.Phase
}

// release runs the i-th release of the harness: the scenario's act at a
// random point of it, up killed as it enters a random one of the
// scenario's phases, then the invariants once it has ended.
func (h *crashRun) release(i int, r *rand.Rand) error {
	sc := scenarios[i%len(scenarios)]
	version := fmt.Sprintf("v%d", i+2)
	unexplainedBefore := h.unexplained.Load()
	h.inBad.Store(len(sc.flags) > 0)
	id, err := h.request(version, sc.flags)
	if err != nil {
		return err
	}
	actAt := time.Duration(r.IntN(6000)) * time.Millisecond
	target := sc.phases[r.IntN(len(sc.phases))]
	extra := time.Duration(r.IntN(150)) * time.Millisecond
	var entered time.Time
	start := time.Now()
	acted, killed := sc.act == "" || sc.act == "switch", false
	for !(acted && killed) && h.ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
		if entered.IsZero() {
			if p := h.phaseOf(id, 2*time.Second); p == target || p.Final() || time.Since(start) > 30*time.Second {
				entered = time.Now()
			}
		}
		killAt := time.Since(start) // logged
		if !killed && !entered.IsZero() && time.Since(entered) < extra {
			continue
		}
		if !acted && time.Since(start) >= actAt {
			acted = h.act(sc, id)
		}
		if !killed && !entered.IsZero() {
			killed = true
			if err := h.kill(i, sc, id, target, killAt); err != nil {
				return err
			}
		}
	}
	rec, ok := h.ended(id, 120*time.Second)
	if !ok {
		h.violate("release %s (%s) did not end within 120s", id, sc.name)
		return nil
	}
	if h.inBad.Load() { // the restore is done: a second for connections to the bad group to drain
		time.Sleep(time.Second)
		h.inBad.Store(false)
	}
	h.res.Outcomes[string(rec.Phase)]++
	if rec.Phase == release.PhaseCompleted {
		// a completed release's group is the one users are served by
		c, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		rt, _, err := routes.Get(c, h.routesKV, "hello")
		cancel()
		if err == nil && rt.Active != rec.Group {
			h.violate("after %s (%s): completed on %s, but the route's active group is %s", id, sc.name, rec.Group, rt.Active)
		}
	}
	if sc.act == "switch" && rec.Phase == release.PhaseCompleted {
		h.switchBack(id)
	}
	if n := h.unexplained.Load() - unexplainedBefore; n > 0 {
		h.violate("after %s (%s, %s): %d requests failed outside a bad group's window while up ran", id, sc.name, rec.Phase, n)
	}
	h.res.Checks++
	for _, v := range checkInvariants(h.ctx, h.nc, h.releases, h.routesKV, h.instances, h.js, h.o.Hello, id, h.svc) {
		h.violate("after %s (%s, %s): %s", id, sc.name, rec.Phase, v)
	}
	return nil
}

// act asks for the scenario's rollback or abort of release id; false when
// it could not be asked (up is down: it is asked again).
func (h *crashRun) act(sc scenario, id string) bool {
	c, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	k := events.RollbackRequested
	if sc.act == "abort" {
		k = events.AbortRequested
	}
	err := natsx.Emit(c, h.js, "crash", id+":"+sc.act, k, "hello", id, events.Rollback{Service: "hello", Reason: "crash harness: " + sc.name, By: "crash"})
	if err != nil {
		h.progress("  %s: %v (up is down: retried)", sc.act, err)
		return false
	}
	return true
}

// kill SIGKILLs `redblack up` and starts it again on the same data.
func (h *crashRun) kill(i int, sc scenario, id string, target release.Phase, killAt time.Duration) error {
	phase := string(h.phaseOf(id, 2*time.Second))
	if phase == "" {
		phase = "requested"
	}
	h.res.KilledIn[phase]++
	h.res.Kills++
	t0 := time.Now()
	h.isDown.Store(true)
	h.u.kill()
	h.u = nil
	if err := h.startUp(); err != nil {
		return err
	}
	h.res.Recoveries = append(h.res.Recoveries, time.Since(t0))
	time.AfterFunc(time.Second, func() { h.isDown.Store(false) })
	h.progress("release %d (%s, %s): up killed in %s (aimed at %s), %s after the request; ready again in %s", i+2, sc.name, id, phase, target, killAt.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	return nil
}

// switchBack moves the traffic back to the group a completed release
// replaced, by hand (the "manual switch after" scenario), and waits for it.
func (h *crashRun) switchBack(id string) {
	// the record is completed a moment before the lock is freed, and a
	// switch by hand under a release's lock is refused
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		_, _, err := h.releases.Lock(c, "hello")
		cancel()
		if errors.Is(err, release.ErrNotFound) {
			break
		}
	}
	c, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	rt, _, _ := routes.Get(c, h.routesKV, "hello")
	if rt.Previous != "" {
		_ = natsx.Emit(c, h.js, "crash", id+":switch", events.TrafficSwitch, "hello", "", events.TrafficCommand{Service: "hello", Group: rt.Previous})
	}
	cancel()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		now, _, _ := routes.Get(c, h.routesKV, "hello")
		cancel()
		if now.Active == rt.Previous {
			break
		}
	}
}

// checkInvariants returns what is wrong after a release ended.
func checkInvariants(ctx context.Context, nc *nats.Conn, releases release.Store, routesKV, instances jetstream.KeyValue, js jetstream.JetStream, hello, id string, svc spec.Service) []string {
	var bad []string
	// the end of a release is announced after its last step (after a kill
	// between the record and the announcement, when the step is delivered
	// again: within its ack wait): give the provisioner's listing, the
	// processes and the audit trail a bounded moment to agree
	deadline := time.Now().Add(20 * time.Second)
	for {
		bad = bad[:0]
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, _, err := releases.Lock(c, "hello"); err == nil {
			bad = append(bad, "the lock is still held")
		}
		rt, _, err := routes.Get(c, routesKV, "hello")
		full := 0
		for g, w := range rt.Weights {
			if w == routes.MaxWeight {
				full++
				if ids, _ := discovery.Up(c, instances, "hello", g); len(ids) == 0 {
					bad = append(bad, g+" has all the traffic and no instance up")
				}
			} else if w != 0 {
				bad = append(bad, fmt.Sprintf("%s has weight %d", g, w))
			}
		}
		if err != nil || full != 1 {
			bad = append(bad, fmt.Sprintf("%d groups have all the traffic (%v)", full, rt.Weights))
		}
		cancel()
		// owned: the route's active group, and up to keep_previous others
		// (the route's previous one always among them: a rollback's target)
		groups, procs := listGroups(nc)
		others := 0
		for _, g := range groups {
			switch {
			case strings.HasSuffix(g, "-canary") || strings.HasSuffix(g, "-baseline"):
				bad = append(bad, "left over: "+g)
			case g != rt.Active:
				others++
			}
		}
		if others > svc.Strategy.KeepPrevious {
			bad = append(bad, fmt.Sprintf("%d groups kept besides the active one, more than keep_previous %d: %v", others, svc.Strategy.KeepPrevious, groups))
		}
		for what, g := range map[string]string{"active": rt.Active, "previous": rt.Previous} {
			if g != "" && !slices.Contains(groups, g) {
				bad = append(bad, fmt.Sprintf("the route's %s group %s is gone (groups %v)", what, g, groups))
			}
		}
		if n := testkit.CountProcesses(hello); n != procs {
			bad = append(bad, fmt.Sprintf("%d hello processes for %d instances the provisioner owns", n, procs))
		}
		if ghosts := unownedEntries(ctx, nc, instances); len(ghosts) > 0 {
			bad = append(bad, fmt.Sprintf("instance entries without an instance: %v", ghosts))
		}
		if n := terminalEvents(ctx, js, id); n != 1 {
			bad = append(bad, fmt.Sprintf("%d terminal events in the audit trail", n))
		}
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return bad
}

// listGroups asks the provisioner for hello's groups and counts their
// instances.
func listGroups(nc *nats.Conn) ([]string, int) {
	names, ids := listOwned(nc)
	if ids == nil {
		return nil, -1
	}
	return names, len(ids)
}

// listOwned asks the provisioner for hello's groups and the ids of their
// instances (nil ids: no answer).
func listOwned(nc *nats.Conn) ([]string, map[string]bool) {
	msg, err := nc.Request("redblack.provisioner.list", []byte("hello"), 5*time.Second)
	if err != nil {
		return nil, nil
	}
	var gs []struct {
		Spec struct {
			Group string `json:"group"`
		} `json:"spec"`
		Instances []struct {
			ID string `json:"id"`
		} `json:"instances"`
	}
	if json.Unmarshal(msg.Data, &gs) != nil {
		return nil, nil
	}
	var names []string
	ids := map[string]bool{}
	for _, g := range gs {
		names = append(names, g.Spec.Group)
		for _, i := range g.Instances {
			ids[i.ID] = true
		}
	}
	return names, ids
}

// unownedEntries lists the instance entries of hello in discovery that no
// instance the provisioner owns stands behind.
func unownedEntries(ctx context.Context, nc *nats.Conn, instances jetstream.KeyValue) []string {
	_, owned := listOwned(nc)
	if owned == nil {
		return []string{"(the provisioner did not answer)"}
	}
	keys, err := instances.ListKeysFiltered(ctx, discovery.ServiceFilter("hello"))
	if err != nil {
		return nil // no keys at all
	}
	var out []string
	for k := range keys.Keys() {
		if _, _, id, err := discovery.ParseKey(k); err == nil && !owned[id] {
			out = append(out, k)
		}
	}
	return out
}

// terminalEvents counts the release's events that end it.
func terminalEvents(ctx context.Context, js jetstream.JetStream, id string) int {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n := 0
	if err := natsx.ReadAll(c, js, topology.StreamReleases, []string{subjects.AllReleases("hello")}, func(m jetstream.Msg) {
		ev, err := events.Decode(m.Data())
		if err != nil || ev.ReleaseID != id {
			return
		}
		switch ev.Type {
		case events.ReleaseCompleted.Type(), events.RolledBack.Type(), events.ReleaseAborted.Type(), events.ReleaseRejected.Type():
			n++
		}
	}); err != nil {
		return -1
	}
	return n
}

// crashBench is `bench crash`.
func crashBench() Entry {
	var kills int
	var seed uint64
	return Entry{
		Name:  "crash",
		Short: "the crash harness: releases of every kind under load, `redblack up` SIGKILLed at a random point of each, invariants after each",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&kills, "kills", 60, "releases, each with one SIGKILL of redblack up")
			f.Uint64Var(&seed, "seed", 1, "seed of the kill points")
		},
		Examples: Hello,
		Run: func(ctx context.Context, env Env, _ []string) error {
			w := env.Work
			r, err := Crash(ctx, CrashOptions{Redblack: env.Self, Hello: w.Hello, Dir: w.Dir, Kills: kills, Seed: seed, Progress: env.Progress})
			if err != nil {
				return err
			}
			return printCrash(env, r)
		},
	}
}

// printCrash prints the harness's figures and every violation; violations
// are an error.
func printCrash(env Env, r CrashResult) error {
	sort.Slice(r.Recoveries, func(i, j int) bool { return r.Recoveries[i] < r.Recoveries[j] })
	p := func(q float64) time.Duration {
		if len(r.Recoveries) == 0 {
			return 0
		}
		return r.Recoveries[min(len(r.Recoveries)-1, int(q*float64(len(r.Recoveries))))].Round(time.Millisecond)
	}
	tw := table(env.Out)
	row(tw, "figure", "measured", "target")
	row(tw, "kills of redblack up (SIGKILL), by the phase of the release", fmt.Sprintf("%d: %v", r.Kills, r.KilledIn), "≥ 50, every phase")
	row(tw, "releases by outcome", fmt.Sprint(r.Outcomes), "all terminal")
	row(tw, "kill → redblack up ready again, p50 / max", fmt.Sprintf("%s / %s", p(0.5), p(1)), "-")
	row(tw, "invariant checks / violations", fmt.Sprintf("%d / %d", r.Checks, len(r.Violations)), "0 violations")
	row(tw, "requests; failed while up ran / while it was down", fmt.Sprintf("%d; %d / %d", r.Requests, r.Failed, r.FailedWhileDown),
		"- (bad releases fail requests beyond the rescue budget; the data plane serves while up is dead)")
	row(tw, "failed while up ran, outside every bad release's window", r.Unexplained, "0")
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, v := range r.Violations {
		fmt.Fprintln(env.Out, "VIOLATION:", v)
	}
	if len(r.Violations) > 0 {
		return fmt.Errorf("%d invariant violations", len(r.Violations))
	}
	return nil
}

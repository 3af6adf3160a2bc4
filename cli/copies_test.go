package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/deploy/cluster"
	"github.com/redblack/redblack/services/provisioner/hosts"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// TestUpNodesTwoCopies runs `redblack up --nodes 3 --copies 2 --hosts 2`:
// two processes each of canary, watchdog, chaos and router (the routers on
// one port), and two local provisioners as hosts h1 and h2, under load
// through both routers. During a healthy release one copy of each service
// is SIGKILLed: the canary copy judging it and a chaos copy mid-canary,
// h1's provisioner as it launches (up restarts it), the watchdog copy
// watching the bake and a router mid-bake. The other copies (and the
// restarted provisioner) finish it, with each step's event in the audit
// log exactly once. Then a release whose canary fails rolls back; its
// canary and baseline groups are placed on h2 (by their names), so they
// are made, judged and destroyed through the other host. No request fails
// but the bad canary's own answers and those in flight on the router that
// died.
func TestUpNodesTwoCopies(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster and nine service processes")
	}
	u := startUpNodes(t, "--copies", "2", "--hosts", "2")
	for _, name := range []string{"canary#2", "router#2", "watchdog#2", "chaos#2", "provisioner#2"} {
		if u.pids[name] <= 0 || syscall.Kill(u.pids[name], 0) != nil {
			t.Fatalf("%s: pid %d not running", name, u.pids[name])
		}
	}
	onH2 := []string{"hello-v003-canary", "hello-v003-baseline"}
	for _, g := range onH2 {
		if h := hosts.Place(g, []string{cluster.HostName(1), cluster.HostName(2)}); h != cluster.HostName(2) {
			t.Fatalf("the test's premise: %s is placed on %s, not h2", g, h)
		}
	}
	ctx := testkit.Context(t, 4*time.Minute)
	js, kv := u.admin(t, ctx, topology.BucketReleases)
	u.release("v1")

	var mu sync.Mutex
	var fails []string // every failed request that was not the bad canary's 500 (it should have none: production rescues them)
	var bad, atRouterDeath int
	var routerKilled time.Time
	load := bench.StartLoad(u.fields["http"], "hello", 4, nil, func(err error, status int) {
		mu.Lock()
		defer mu.Unlock()
		if status == 500 { // only v3's canary answers 500
			bad++
			return
		}
		if !routerKilled.IsZero() && time.Since(routerKilled) < time.Second {
			atRouterDeath++ // in flight on the router that died
			return
		}
		fails = append(fails, fmt.Sprintf("%s status %d: %v", time.Now().Format("15:04:05.000"), status, err))
	})
	defer load.Stop()
	// the load's keep-alive connections may all sit on one router: 32 new
	// connections, which the kernel spreads over both
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for range 32 {
		req, _ := http.NewRequest("GET", "http://"+u.fields["http"]+"/", nil)
		req.Host = "hello"
		resp, err := fresh.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("a new connection: %d", resp.StatusCode)
		}
	}

	// v2, healthy, asked for without waiting: the test follows its record
	code, out, errs := u.cli("release", "hello", "--version", "v2", "--artifact", u.hello+" --version v2")
	if code != 0 {
		t.Fatalf("release v2: %d %s %s", code, out, errs)
	}
	id := awaitLock(t, ctx, kv, u, "hello")
	// the copy holding the canary's lease dies mid-canary: the other judges it
	for _, step := range []struct {
		role  string
		phase release.Phase
	}{{topology.DurableCanaryPhase, release.PhaseCanary}, {topology.DurableWatchdogBake, release.PhaseBaking}} {
		key := release.LeaseKey(step.role, id)
		killed, pid := killLeaseHolder(t, ctx, kv, u, key, id, step.phase)
		at := time.Now()
		switch step.phase {
		case release.PhaseCanary: // and a chaos copy, which has no step of its own
			kill(t, u, "chaos#2")
		case release.PhaseBaking: // and a router: the other serves the port alone
			mu.Lock()
			routerKilled = time.Now()
			mu.Unlock()
			kill(t, u, "router#2")
		}
		by := awaitTakeover(t, ctx, kv, key, pid)
		t.Logf("%s: killed %s (pid %d) mid-%s; the lease passed to %s in %s", step.role, killed, pid, step.phase, by, time.Since(at).Round(time.Millisecond))
		if step.phase == release.PhaseCanary {
			// the one provisioner dies as the release launches: restarted
			// by up, it tracks the launch again
			awaitPhase(t, ctx, kv, id, release.PhaseLaunching)
			kill(t, u, "provisioner")
		}
	}
	rec := awaitEnd(t, ctx, kv, id)
	if rec.Phase != release.PhaseCompleted {
		t.Fatalf("v2 ended %s (%s)\nup's log:\n%s", rec.Phase, rec.Reason, u.logs.String())
	}
	path := []events.Kind{events.ReleaseAccepted, events.CanaryStarted, events.CanaryPassed, events.ClusterReady, events.TrafficSwitched, events.Baked, events.ReleaseCompleted}
	counts := auditPath(t, ctx, js, id, path)
	for _, k := range path {
		if counts[k.Type()] != 1 {
			t.Errorf("%s: %d times in the audit log, want once (all: %v)", k.Type(), counts[k.Type()], counts)
		}
	}
	if counts[events.CanaryFailed.Type()] != 0 || counts[events.RollbackRequested.Type()] != 0 {
		t.Errorf("a second verdict or a rollback: %v", counts)
	}

	// v3's canary fails: rolled back, production never changed
	code, out, errs = u.cli("release", "hello", "--version", "v3", "--artifact", u.hello+" --version v3 --error-rate 0.3", "--wait", "--timeout", "90s")
	if code == 0 || !strings.Contains(out, "rolled_back") {
		t.Fatalf("release v3: %d\n%s\n%s", code, out, errs)
	}
	// v3's canary groups lived on h2, and are gone with their owners
	for _, g := range onH2 {
		hist, err := kv.History(ctx, release.OwnerKey(g))
		if err != nil || len(hist) < 2 || !strings.Contains(string(hist[0].Value()), `"host":"h2"`) || hist[len(hist)-1].Operation() != jetstream.KeyValueDelete {
			t.Errorf("%s's owner: %v, want made on h2 and deleted", g, err)
		}
	}
	ok, _, versions := load.Stop()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("load: %d ok, %d answered 500 by v3's canary, %d of its failures rescued by production, %d in flight on the router killed, %d other failures; versions %v",
		ok, bad, load.Rescued(), atRouterDeath, len(fails), versions)
	if ok == 0 || len(fails) != 0 {
		t.Errorf("%d requests failed outside the bad canary; the first: %v\nup's log:\n%s", len(fails), fails[:min(len(fails), 5)], u.logs.String())
	}
	// v3's canary took traffic, and its 500s were answered by production
	// (the routers' rescue): no user saw one
	if bad != 0 || load.Rescued() == 0 {
		t.Errorf("v3's canary: %d 500s reached users, %d rescued; want none reaching users, and some rescued (it took traffic)", bad, load.Rescued())
	}
	// both routers carried the load: each published samples with requests
	routers := routersWithTraffic(t, ctx, js)
	if len(routers) < 2 {
		t.Errorf("requests through %d router(s) %v, want both", len(routers), routers)
	}
}

// kill SIGKILLs one of up's processes (by its pid now).
func kill(t *testing.T, u *upNodes, name string) {
	t.Helper()
	if err := syscall.Kill(u.pid(name), syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", name, err)
	}
}

// awaitPhase waits until release id has reached phase (or gone past it).
func awaitPhase(t *testing.T, ctx context.Context, kv jetstream.KeyValue, id string, phase release.Phase) {
	t.Helper()
	for {
		rec, _, err := (release.Store{KV: kv}).Get(ctx, id)
		if err == nil && !rec.EnteredAt(phase).IsZero() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never reached %s", id, phase)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// awaitLock waits (up to a minute) for a release to take the service's
// lock and returns its id; on failure it shows up's log and the audit log.
func awaitLock(t *testing.T, ctx context.Context, kv jetstream.KeyValue, u *upNodes, service string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if l, _, err := (release.Store{KV: kv}).Lock(ctx, service); err == nil {
			return l.Release
		}
		select {
		case <-ctx.Done():
			_, audit, _ := u.cli("events", "--since", "10m")
			t.Fatalf("no release of %s took the lock in a minute\nthe audit log:\n%s\nup's log:\n%s", service, audit, u.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// killLeaseHolder waits until release id is in phase and a copy holds the
// lease key, SIGKILLs that copy's process (its pid is in the owner) and
// returns its process name and pid.
func killLeaseHolder(t *testing.T, ctx context.Context, kv jetstream.KeyValue, u *upNodes, key, id string, phase release.Phase) (string, int) {
	t.Helper()
	for {
		rec, _, err := (release.Store{KV: kv}).Get(ctx, id)
		if err == nil && rec.Phase.Final() {
			t.Fatalf("%s ended %s before its %s", id, rec.Phase, phase)
		}
		if e, err := kv.Get(ctx, key); err == nil && rec.Phase == phase {
			var h release.LeaseHolder
			if err := json.Unmarshal(e.Value(), &h); err != nil {
				t.Fatal(err)
			}
			pid := release.OwnerPid(h.Owner)
			for name, p := range u.pids {
				if p == pid && pid > 0 {
					if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
					return name, pid
				}
			}
			t.Fatalf("lease owner %q is none of up's processes %v", h.Owner, u.pids)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never reached %s with a lease held\n%s", id, phase, u.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// awaitTakeover waits until another process than pid holds the lease key,
// or the task is over (the key is gone), and says which.
func awaitTakeover(t *testing.T, ctx context.Context, kv jetstream.KeyValue, key string, pid int) string {
	t.Helper()
	for {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return "nobody: the task ended"
		}
		var h release.LeaseHolder
		if err == nil && json.Unmarshal(e.Value(), &h) == nil && release.OwnerPid(h.Owner) != pid {
			return h.Owner
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the lease %s stayed with pid %d", key, pid)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// awaitEnd waits for release id to reach a final phase.
func awaitEnd(t *testing.T, ctx context.Context, kv jetstream.KeyValue, id string) release.Record {
	t.Helper()
	for {
		rec, _, err := (release.Store{KV: kv}).Get(ctx, id)
		if err == nil && rec.Phase.Final() {
			return rec
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not end (last: %s, %v)", id, rec.Phase, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// auditOf counts the event types of release id in RELEASES.
func auditOf(t *testing.T, ctx context.Context, js jetstream.JetStream, id string) map[string]int {
	t.Helper()
	out := map[string]int{}
	if err := natsx.ReadAll(ctx, js, topology.StreamReleases, []string{"release.hello.>"}, func(m jetstream.Msg) {
		if ev, err := events.Decode(m.Data()); err == nil && ev.ReleaseID == id {
			out[ev.Type]++
		}
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// auditPath is auditOf once every kind of path is in the audit log, or
// after 30 s: a record ends before its last event is stored (a publish
// that meets an election is tried again), so the log is read until the
// path is there, and then counted (a kind twice is the caller's to see).
func auditPath(t *testing.T, ctx context.Context, js jetstream.JetStream, id string, path []events.Kind) map[string]int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		counts := auditOf(t, ctx, js, id)
		missing := false
		for _, k := range path {
			missing = missing || counts[k.Type()] == 0
		}
		if !missing || time.Now().After(deadline) {
			return counts
		}
		select {
		case <-ctx.Done():
			return counts
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// routersWithTraffic lists the router ids whose samples in METRICS counted
// requests.
func routersWithTraffic(t *testing.T, ctx context.Context, js jetstream.JetStream) []string {
	t.Helper()
	seen := map[string]bool{}
	if err := natsx.ReadAll(ctx, js, topology.StreamMetrics, []string{"metrics.hello.>"}, func(m jetstream.Msg) {
		var s metrics.Sample
		if json.Unmarshal(m.Data(), &s) == nil && s.Requests > 0 {
			seen[s.Router] = true
		}
	}); err != nil {
		t.Fatal(err)
	}
	var out []string
	for r := range seen {
		out = append(out, r)
	}
	return out
}

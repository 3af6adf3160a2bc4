package bench

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// Rollback is one release that went bad after the switch.
type Rollback struct {
	Version string
	// FirstBad is the router's timestamp of the new group's first bad
	// response; Restored the router's announcement that every router has
	// all traffic back on the old group.
	FirstBad, Restored time.Time
	// Failed requests the load saw during this release: GETs (rescued by
	// the old group when rescues are on) and POSTs (never rescued: the
	// spec does not opt in).
	Failed, FailedPosts int64
	// Rescued: the bad group's failed requests the router answered from
	// the old group (its samples' count).
	Rescued uint64
	// Requested is the watchdog's rollback.requested: FirstBad → Requested
	// is the detection.
	Requested time.Time
	Reason    string
}

// Detect is first bad response → rollback requested.
func (r Rollback) Detect() time.Duration { return r.Requested.Sub(r.FirstBad) }

// Took is first bad response → traffic restored.
func (r Rollback) Took() time.Duration { return r.Restored.Sub(r.FirstBad) }

// Overhead is the control plane's share of a healthy release.
type Overhead struct {
	Total      time.Duration // requested → completed
	Configured time.Duration // canary duration + bake duration
	Boot       time.Duration // canary groups and the new group, created → ready
}

// ControlPlane is what is left: the time redblack itself took.
func (o Overhead) ControlPlane() time.Duration { return o.Total - o.Configured - o.Boot }

// RollbackResult is what RollbackRun measured.
type RollbackResult struct {
	Rollbacks []Rollback
	Healthy   []Overhead
}

// Percentile of the rollback times (q in 0..1).
func (r RollbackResult) Percentile(q float64) time.Duration {
	return r.percentile(q, Rollback.Took)
}

// DetectPercentile of the detection times (q in 0..1).
func (r RollbackResult) DetectPercentile(q float64) time.Duration {
	return r.percentile(q, Rollback.Detect)
}

func (r RollbackResult) percentile(q float64, of func(Rollback) time.Duration) time.Duration {
	d := make([]time.Duration, len(r.Rollbacks))
	for i, rb := range r.Rollbacks {
		d[i] = of(rb)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// RollbackSpec is hello with a 1 s canary and a bake long enough for the
// failure to come inside it.
func RollbackSpec(hello string) spec.Service {
	return NewSpec("hello", "bench", hello).Canary(time.Second, 250*time.Millisecond).Bake(20 * time.Second).Build()
}

// RollbackRun releases v1, then under steady load n releases whose
// instances fail every request failAfter after they start (after the
// switch), each rolled back by the watchdog, and healthy releases with
// a short bake to measure the control plane's overhead.
//
// With noRescue the router answers no failed request from the old group:
// the figures without rescues, beside those with.
func RollbackRun(dir, hello string, n, healthy int, failAfter time.Duration, noRescue bool, log zerolog.Logger, progress func(string)) (RollbackResult, error) {
	var res RollbackResult
	m, nc, js, err := startLoopbackWith(dir, log, func(c *mesh.Config) { c.Router.Proxy.NoRescue = noRescue })
	if err != nil {
		return res, err
	}
	defer m.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, topology.BucketServices)
	if err != nil {
		return res, err
	}
	svc := RollbackSpec(hello)
	if _, err := spec.Apply(ctx, kv, svc); err != nil {
		return res, err
	}
	t := &timeline{at: map[string]events.Event{}}
	for _, subject := range []string{"release.hello.>", "fleet.hello.servergroup.>"} {
		sub, err := nc.Subscribe(subject, t.add)
		if err != nil {
			return res, err
		}
		defer sub.Unsubscribe()
	}
	if err := nc.Flush(); err != nil {
		return res, err
	}
	request := func(version string, flags ...string) (string, error) {
		return requestHello(ctx, js, "bench", hello, version, flags...)
	}
	id, err := request("v1")
	if err != nil {
		return res, err
	}
	if _, err := t.wait(id, 60*time.Second, events.ReleaseCompleted); err != nil {
		return res, err
	}
	load := StartLoad(m.HTTP(), "hello", 4, nil, nil)
	defer load.Stop()
	posts := StartPosts(m.HTTP(), "hello", 1, nil)
	defer posts.Stop()

	// the healthy releases, with a 1 s bake so each is short
	quick := svc
	quick.Strategy.Bake.Duration = spec.Duration(time.Second)
	if _, err := spec.Apply(ctx, kv, quick); err != nil {
		return res, err
	}
	for i := range healthy {
		version := fmt.Sprintf("h%d", i+1)
		id, err := request(version)
		if err != nil {
			return res, err
		}
		done, err := t.wait(id, 2*time.Minute, events.ReleaseCompleted, events.RolledBack)
		if err != nil {
			return res, err
		}
		if done.Type != events.ReleaseCompleted.Type() {
			return res, fmt.Errorf("healthy release %s rolled back: %s", version, done.Data)
		}
		o := Overhead{Total: done.Time.Sub(t.get(id, events.ReleaseAccepted).Time), Configured: quick.Strategy.Canary.Duration.D() + quick.Strategy.Bake.Duration.D()}
		o.Boot = max(t.boot(id, release.RoleBaseline), t.boot(id, release.RoleCanary)) + t.boot(id, release.RoleProduction)
		res.Healthy = append(res.Healthy, o)
		progress(fmt.Sprintf("healthy %s: %s in all, control plane %s", version, o.Total.Round(time.Millisecond), o.ControlPlane().Round(time.Millisecond)))
	}
	if _, err := spec.Apply(ctx, kv, svc); err != nil {
		return res, err
	}
	for i := range n {
		version := fmt.Sprintf("bad%d", i+1)
		failed0, posts0 := load.Failed(), posts.Failed()
		id, err := request(version, "--fail-after", failAfter.String())
		if err != nil {
			return res, err
		}
		if ev, err := t.wait(id, 2*time.Minute, events.TrafficSwitched, events.RolledBack); err != nil {
			return res, err
		} else if ev.Type == events.RolledBack.Type() {
			return res, fmt.Errorf("%s rolled back before its switch: %s", version, ev.Data)
		}
		done, err := t.wait(id, 2*time.Minute, events.RolledBack, events.ReleaseCompleted)
		if err != nil {
			return res, err
		}
		if done.Type != events.RolledBack.Type() {
			return res, fmt.Errorf("%s completed: the failure came after its bake", version)
		}
		var c events.Cluster
		_ = t.get(id, events.ClusterReady).DecodeData(&c)
		restored := t.get(id, events.TrafficRestored).Time
		first, rescued, err := BadGroup(ctx, js, c.Group, restored)
		if err != nil {
			return res, err
		}
		var rd events.RollbackDone
		_ = done.DecodeData(&rd)
		rb := Rollback{Version: version, FirstBad: first, Restored: restored, Requested: t.get(id, events.RollbackRequested).Time,
			Failed: load.Failed() - failed0, FailedPosts: posts.Failed() - posts0, Rescued: rescued, Reason: rd.Reason}
		res.Rollbacks = append(res.Rollbacks, rb)
		progress(fmt.Sprintf("%s: first bad response → rollback requested %s, → traffic restored %s; %d GETs and %d POSTs failed, %d rescued",
			version, rb.Detect().Round(time.Millisecond), rb.Took().Round(time.Millisecond), rb.Failed, rb.FailedPosts, rb.Rescued))
	}
	return res, nil
}

// BadGroup reads, from a bad group's metrics samples, the router's
// timestamp of its first bad response and the requests rescued from it up
// to until (its samples stop once it is destroyed).
func BadGroup(ctx context.Context, js jetstream.JetStream, group string, until time.Time) (time.Time, uint64, error) {
	var first time.Time
	var rescued uint64
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := metrics.Follow(fctx, js, topology.StreamMetrics, "hello", []string{group}, time.Now().Add(-5*time.Minute), nil, func(s metrics.Sample) bool {
		if first.IsZero() && !s.FirstError.IsZero() {
			first = s.FirstError
		}
		rescued += s.Rescued
		return !s.End.After(until.Add(2 * time.Second))
	})
	if err != nil && fctx.Err() == nil {
		return first, rescued, err
	}
	if first.IsZero() {
		return first, rescued, fmt.Errorf("no sample of %s records a bad response", group)
	}
	return first, rescued, nil
}

// timeline keeps the first event of each type per release, and the
// created/ready times of server groups.
type timeline struct {
	mu sync.Mutex
	at map[string]events.Event // release id + type, or group + type
}

func (t *timeline) add(m *nats.Msg) {
	ev, err := events.Decode(m.Data)
	if err != nil {
		return
	}
	key := ev.ReleaseID + " " + ev.Type
	if p, err := subjects.Parse(m.Subject); err == nil && p.Domain == subjects.DomainFleet {
		var g events.ServerGroup
		_ = ev.DecodeData(&g)
		key = g.Group + " " + ev.Type
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.at[key]; !ok {
		t.at[key] = ev
	}
}

func (t *timeline) get(id string, k events.Kind) events.Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.at[id+" "+k.Type()]
}

// boot is the created → ready time of release id's group in role
// (release.RoleGroupName), 0 if it never came.
func (t *timeline) boot(id, role string) time.Duration {
	var a events.Accepted
	if err := t.get(id, events.ReleaseAccepted).DecodeData(&a); err != nil {
		return 0
	}
	group := release.RoleGroupName("hello", a.Sequence, role)
	t.mu.Lock()
	defer t.mu.Unlock()
	created, ok1 := t.at[group+" "+events.ServerGroupCreated.Type()]
	ready, ok2 := t.at[group+" "+events.ServerGroupReady.Type()]
	if !ok1 || !ok2 {
		return 0
	}
	return ready.Time.Sub(created.Time)
}

// wait waits for one of kinds for release id.
func (t *timeline) wait(id string, limit time.Duration, kinds ...events.Kind) (events.Event, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, k := range kinds {
			if ev := t.get(id, k); ev.ID != "" {
				return ev, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return events.Event{}, fmt.Errorf("release %s: none of %v within %s", id, kinds, limit)
}

// requestHello publishes a release request of hello's version (the
// artifact: hello --version V and flags) as the admin, with the id
// <prefix>-<version>-<random>, and returns the id.
func requestHello(ctx context.Context, js jetstream.JetStream, prefix, hello, version string, flags ...string) (string, error) {
	return requestRelease(ctx, js, prefix, "hello", version, events.Artifact{Command: append([]string{hello, "--version", version}, flags...)})
}

// requestRelease publishes a release request of service's version with
// art and returns its id (prefix-version-random).
func requestRelease(ctx context.Context, js jetstream.JetStream, prefix, service, version string, art events.Artifact) (string, error) {
	id := prefix + "-" + version + "-" + events.NewID()[:6]
	ev, err := events.NewWithID(id, prefix, events.ReleaseRequested, service, id, events.Requested{Version: version, Artifact: art})
	if err != nil {
		return "", err
	}
	_, err = natsx.Publish(ctx, js, events.ReleaseRequested.Subject(service), ev)
	return id, err
}

// startLoopback starts the mesh in dir on loopback ports with a client
// connection of its own.
func startLoopback(dir string, log zerolog.Logger) (*mesh.Mesh, *nats.Conn, jetstream.JetStream, error) {
	return startLoopbackWith(dir, log, nil)
}

// startLoopbackWith is startLoopback with the mesh's config changed by
// tune first.
func startLoopbackWith(dir string, log zerolog.Logger, tune func(*mesh.Config)) (*mesh.Mesh, *nats.Conn, jetstream.JetStream, error) {
	cfg := mesh.DefaultConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP, cfg.Log = dir, "127.0.0.1:0", "127.0.0.1:0", log
	if tune != nil {
		tune(&cfg)
	}
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	nc, err := m.Connect("bench")
	if err != nil {
		m.Stop()
		return nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		m.Stop()
		return nil, nil, nil, err
	}
	return m, nc, js, nil
}

// rollbackBench is `bench rollback`.
func rollbackBench() Entry {
	var bad, healthy int
	var failAfter time.Duration
	return Entry{
		Name:  "rollback",
		Short: "releases that go bad after the switch, with the router's rescues on and off: detection, first bad response → all traffic back on the old group, failed and rescued requests; control-plane overhead of healthy releases",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&bad, "n", 10, "releases that fail after the switch")
			f.IntVar(&healthy, "healthy", 3, "healthy releases to measure the overhead on")
			f.DurationVar(&failAfter, "fail-after", 3*time.Second, "how long after its start a bad instance begins to fail")
		},
		Examples: Hello,
		Run: func(_ context.Context, env Env, _ []string) error {
			w := env.Work
			r, err := RollbackRun(w.Path("mesh"), w.Hello, bad, healthy, failAfter, false, env.Log(), env.Progress)
			if err != nil {
				return err
			}
			env.Progress("the same bad releases with the router's rescues off:")
			off, err := RollbackRun(w.Path("mesh-norescue"), w.Hello, bad, 0, failAfter, true, env.Log(), env.Progress)
			if err != nil {
				return err
			}
			printRollbacks(env, r, off)
			return nil
		},
	}
}

// printRollbacks prints each bad release with rescues on and off, then the
// figures beside their targets and anchors.
func printRollbacks(env Env, r, off RollbackResult) {
	tab := table(env.Out)
	row(tab, "release", "rescues", "first bad → rollback requested", "→ restored", "failed GETs", "failed POSTs", "rescued")
	var failedOn, failedOff, postsOn int64
	var rescued uint64
	for _, run := range []struct {
		name string
		r    RollbackResult
	}{{"on", r}, {"off", off}} {
		for _, rb := range run.r.Rollbacks {
			row(tab, rb.Version, run.name, rb.Detect().Round(time.Millisecond), rb.Took().Round(time.Millisecond), rb.Failed, rb.FailedPosts, rb.Rescued)
			if run.name == "on" {
				failedOn, postsOn, rescued = failedOn+rb.Failed, postsOn+rb.FailedPosts, rescued+rb.Rescued
			} else {
				failedOff += rb.Failed
			}
		}
	}
	tab.Flush()
	fmt.Fprintln(env.Out)
	row(tab, "figure", "measured", "target", "anchor")
	row(tab, fmt.Sprintf("first bad response → 100%% on old group, p50 (n=%d)", len(r.Rollbacks)), r.Percentile(0.5).Round(time.Millisecond), "< 1s", "Flagger interval×threshold: 1–10 min")
	row(tab, "first bad response → 100% on old group, p95", r.Percentile(0.95).Round(time.Millisecond), "< 2s", "CodeDeploy alarms: ≥ 1 min")
	row(tab, "first bad response → rollback requested, p50: rescues on / off", fmt.Sprintf("%s / %s", r.DetectPercentile(0.5).Round(time.Millisecond), off.DetectPercentile(0.5).Round(time.Millisecond)), "the same", "-")
	row(tab, "failed GETs (idempotent) in all bad releases: rescues on / off", fmt.Sprintf("%d / %d", failedOn, failedOff), "0 with rescues", "every rollback above: users see the bad group until restored")
	row(tab, "rescued requests (the bad groups' samples), rescues on", rescued, "-", "-")
	row(tab, "failed POSTs (not rescued: the spec does not opt in), rescues on", postsOn, "> 0, counted", "-")
	for i, o := range r.Healthy {
		row(tab, fmt.Sprintf("healthy release %d: control-plane overhead", i+1), o.ControlPlane().Round(time.Millisecond), "< 1s",
			fmt.Sprintf("(%s in all − %s canary+bake − %s boot)", o.Total.Round(time.Millisecond), o.Configured, o.Boot.Round(time.Millisecond)))
	}
	tab.Flush()
}

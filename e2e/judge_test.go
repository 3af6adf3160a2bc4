package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/bench"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/cli"
	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/services/canary/phase"
	"github.com/redblack/redblack/services/watchdog"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// canaryResult waits for the canary's verdict and decodes it.
func (p *pipeline) canaryResult(id string) (bool, events.CanaryResult) {
	p.t.Helper()
	ev := p.await(id, 90*time.Second, events.CanaryPassed, events.CanaryFailed)
	var res events.CanaryResult
	if err := ev.DecodeData(&res); err != nil {
		p.t.Fatal(err)
	}
	return ev.Type == events.CanaryPassed.Type(), res
}

// TestCanaryWithBackgroundErrors: a service that always answers 0.5 % of
// requests with 500 (both groups alike, through the real router) passes its
// canary; the same with 2 % on the canary fails it on error_rate.
func TestCanaryWithBackgroundErrors(t *testing.T) {
	if raceBuild {
		// its point is the judge's power on the requests of an 8 s canary;
		// under the race detector the mesh serves a fraction of them, and a
		// 2 % canary can pass for want of evidence (a CI run did). It runs
		// in the plain test run; the race run looks for races elsewhere.
		t.Skip("a statistical test: under -race too few requests for its power")
	}
	svc := fastSpec()
	svc.Strategy.Canary.Duration = spec.Duration(8 * time.Second)
	svc.Strategy.Bake.Duration = spec.Duration(time.Second)
	p := newPipeline(t, t.TempDir(), svc)
	v1 := p.release("v1", "--error-rate", "0.005")
	p.await(v1, 60*time.Second, events.ReleaseCompleted)
	p.startLoad()
	p.served(2000)

	v2 := p.release("v2", "--error-rate", "0.005")
	ok, res := p.canaryResult(v2)
	if !ok {
		t.Fatalf("a canary with the same 0.5%% errors as production failed: %s", res.Reason)
	}
	errRate := res.Metrics[0]
	if errRate.Name != spec.MetricErrorRate || errRate.BaselineSamples < 2000 || errRate.CanaryMedian == 0 {
		t.Fatalf("error_rate judged on %d requests, canary rate %g: %+v", errRate.BaselineSamples, errRate.CanaryMedian, errRate)
	}
	t.Logf("v2 passed: %d/%d requests, errors %.2f%% vs %.2f%%, peak evidence %.2f, %d looks",
		errRate.BaselineSamples, errRate.CanarySamples, 100*errRate.BaselineMedian, 100*errRate.CanaryMedian, errRate.Peak, res.Looks)
	p.await(v2, 60*time.Second, events.ReleaseCompleted)

	v3 := p.release("v3", "--error-rate", "0.02")
	ok, res = p.canaryResult(v3)
	if ok || !strings.Contains(res.Reason, "error_rate High") {
		t.Fatalf("a canary with 2%% errors against 0.5%%: passed %v, %s", ok, res.Reason)
	}
	t.Logf("v3 failed after %d looks: %s", res.Looks, res.Reason)
	p.await(v3, 30*time.Second, events.RolledBack)
}

// junk is every kind of sample a judge must refuse, for a group.
func junk(group, router string) [][]byte {
	at := time.Now().UTC()
	base := fmt.Sprintf(`"service":"hello","group":%q,"router":%q,"start":%q,"end":%q`, group, router,
		at.Add(-time.Second).Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
	future := fmt.Sprintf(`"service":"hello","group":%q,"router":%q,"start":%q,"end":%q`, group, router,
		at.Add(time.Hour).Format(time.RFC3339Nano), at.Add(time.Hour+time.Second).Format(time.RFC3339Nano))
	return [][]byte{
		[]byte(`{` + base + `,"requests":10,"2xx":10,"buckets_us":[100],"latency":[5,5]}`),         // panicked FromHistogram and Totals.Quantile
		[]byte(`{` + base + `,"requests":1000000,"2xx":1000000}`),                                  // counts without a histogram
		[]byte(`{` + base + `,"requests":3,"2xx":3,"buckets_us":[100,200],"latency":[1,1,1,0,0]}`), // arrays disagree
		[]byte(`{` + future + `,"requests":1,"2xx":1,"buckets_us":[100,200],"latency":[1,0,0]}`),   // window in the future
		[]byte(`{"service":"hello","group":"` + group + `","router":"forged","start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:01Z","requests":0,"buckets_us":[100,200],"latency":[0,0,0]}`),
		[]byte(`not json at all`),
		[]byte(`{` + base + `,"requests":5,"2xx":5,"buckets_us":[100,200],"latency":[5,0,0],"extra":true}`),
	}
}

// routerID is the id the mesh's router puts in its samples.
func (p *pipeline) routerID(group string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := p.js.Stream(ctx, topology.StreamMetrics)
	if err != nil {
		p.t.Fatal(err)
	}
	for ctx.Err() == nil {
		if m, err := st.GetLastMsgForSubject(ctx, subjects.Sample("hello", group, subjects.PublisherRouter, "*")); err == nil {
			s, err := metrics.Decode(m.Data)
			if err == nil && s.Router != "" {
				return s.Router
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("no sample of %s", group)
	return ""
}

// publishJunk publishes every kind of junk sample on the group's subject
// of the router router, as the router's user (the only one that may).
func (p *pipeline) publishJunk(group, router string) {
	p.t.Helper()
	creds, err := p.m.Authority().Service("router")
	if err != nil {
		p.t.Fatal(err)
	}
	nc, err := p.m.ConnectCreds("junk", creds)
	if err != nil {
		p.t.Fatal(err)
	}
	defer nc.Close()
	for _, b := range junk(group, router) {
		nc.Publish(subjects.Sample("hello", group, subjects.PublisherRouter, router), b)
	}
	if err := nc.Flush(); err != nil {
		p.t.Fatal(err)
	}
}

// TestMalformedSamplesChangeNothing: samples that cannot be real, published
// as the router's user on the canary's, the baseline's and then the new
// group's subjects during the canary and the bake, are dropped and counted:
// the release completes and the mesh stays up. Then a release that answers
// half its requests with 500 is not saved by forged "all good" samples
// without a histogram: its canary fails.
func TestMalformedSamplesChangeNothing(t *testing.T) {
	svc := fastSpec()
	svc.Strategy.Canary.Duration = spec.Duration(4 * time.Second)
	svc.Strategy.Bake.Duration = spec.Duration(4 * time.Second)
	p := newPipeline(t, t.TempDir(), svc)
	p.deployV1()
	rid := p.routerID("hello-v001")

	v2 := p.release("v2")
	p.await(v2, 30*time.Second, events.CanaryStarted)
	for _, g := range []string{"hello-v002-canary", "hello-v002-baseline"} {
		p.publishJunk(g, rid)
	}
	ok, res := p.canaryResult(v2)
	if !ok || res.DroppedSamples < 10 {
		t.Fatalf("canary of a healthy v2 with junk samples: passed %v, %d dropped: %s", ok, res.DroppedSamples, res.Reason)
	}
	p.await(v2, 30*time.Second, events.TrafficSwitched)
	p.publishJunk("hello-v002", rid)
	p.publishJunk("hello-v001", rid) // the bake's reference group too
	p.await(v2, 30*time.Second, events.ReleaseCompleted)
	for _, name := range mesh.ServiceNames {
		if _, err := p.nc.Request(natsx.StatusSubject(name), nil, 2*time.Second); err != nil {
			t.Fatalf("%s does not answer after the junk: %v", name, err)
		}
	}

	v3 := p.release("v3", "--error-rate", "0.5")
	p.await(v3, 30*time.Second, events.CanaryStarted)
	for range 5 {
		p.publishJunk("hello-v003-canary", rid)
	}
	ok, res = p.canaryResult(v3)
	if ok || !strings.Contains(res.Reason, "error_rate High") {
		t.Fatalf("a canary with 50%% errors and forged samples: passed %v: %s", ok, res.Reason)
	}
	p.await(v3, 30*time.Second, events.RolledBack)
}

// TestLongCanaryAndBakeSurviveRestarts: METRICS keeps only 3 s of samples
// here, but the canary lasts 12 s and the bake 10 s. The mesh is stopped
// in the middle of each and started again: the judge resumes from the
// checkpoint in the record (not from what the stream still holds), so the
// final report counts more requests than METRICS could hold at any time,
// and the bake keeps the reference it took before the switch.
func TestLongCanaryAndBakeSurviveRestarts(t *testing.T) {
	dir := t.TempDir()
	svc := fastSpec()
	svc.Strategy.Canary.Duration = spec.Duration(12 * time.Second)
	svc.Strategy.Bake.Duration = spec.Duration(10 * time.Second)
	cfg := testConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP, cfg.KeepInstances = dir, "127.0.0.1:0", "127.0.0.1:0", true
	cfg.Topology.MetricsMaxAge = 3 * time.Second
	restart := func(p *pipeline) {
		p.load.Stop()
		p.m.Stop()
		m, err := mesh.Start(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Stop() })
		p.m = m
		p.attach(spec.Service{})
		p.startLoad()
	}
	m1, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m1.Stop(); testkit.KillAll(hello) })
	p := &pipeline{t: t, m: m1}
	p.attach(svc)
	p.deployV1()
	v2 := p.release("v2")
	p.await(v2, 30*time.Second, events.CanaryStarted)
	// half the canary, then the evidence so far is in the record
	deadline := time.Now().Add(20 * time.Second)
	var before phase.Checkpoint
	for time.Now().Before(deadline) {
		if r := p.record(v2); len(r.Checkpoint) > 0 {
			before, _ = phase.DecodeCheckpoint(r.Checkpoint)
			if before.Looks > 0 && time.Since(r.JudgeFrom) > 6*time.Second {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if before.State.BaseRequests == 0 {
		t.Fatal("no checkpoint of the canary's evidence in the record")
	}
	restart(p)
	ok, res := p.canaryResult(v2)
	if !ok {
		t.Fatalf("canary after a restart: %s", res.Reason)
	}
	after := p.record(v2)
	cp, err := phase.DecodeCheckpoint(after.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	held := p.metricsHeld("hello-v002-baseline")
	t.Logf("baseline requests: %d at the restart, %d judged in all; METRICS holds %d of the baseline's now", before.State.BaseRequests, cp.State.BaseRequests, held)
	if cp.State.BaseRequests <= before.State.BaseRequests || cp.State.BaseRequests <= held || cp.Looks <= before.Looks {
		t.Fatalf("the judge did not resume from its evidence: %d requests at the restart, %d at the end, %d held by METRICS", before.State.BaseRequests, cp.State.BaseRequests, held)
	}

	p.await(v2, 30*time.Second, events.TrafficSwitched)
	// the old group keeps its slice of the traffic during the bake: the
	// same-time reference, counted in the record's checkpoint
	var ref watchdog.Bake
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && ref.Same.Old.Requests == 0; time.Sleep(100 * time.Millisecond) {
		if r := p.record(v2); len(r.BakeCheckpoint) > 0 {
			ref, _ = watchdog.DecodeBake(r.BakeCheckpoint)
		}
	}
	if ref.Same.Old.Requests == 0 {
		t.Fatal("no same-time reference (the old group's slice) in the bake's checkpoint")
	}
	// wait until the samples of the bake's first seconds have aged out of
	// METRICS: what the watch counted then can only come from the record
	switched := p.record(v2).EnteredAt(release.PhaseSwitching)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := p.js.Stream(ctx, topology.StreamMetrics)
		var first time.Time
		if err == nil {
			if info, err := st.Info(ctx); err == nil {
				first = info.State.FirstTime
			}
		}
		cancel()
		if first.After(switched.Add(time.Second)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("METRICS still holds samples from %s, the switch was at %s", first, switched)
		}
	}
	restart(p)
	p.await(v2, 60*time.Second, events.ReleaseCompleted)
	var end watchdog.Bake
	if r := p.record(v2); len(r.BakeCheckpoint) > 0 {
		end, _ = watchdog.DecodeBake(r.BakeCheckpoint)
	}
	held = p.metricsHeld("hello-v001")
	t.Logf("the old group's slice: %d requests at the restart, %d judged in all; METRICS holds %d of the old group's now", ref.Same.Old.Requests, end.Same.Old.Requests, held)
	if end.Same.Old.Requests < ref.Same.Old.Requests || end.Same.Old.Requests <= held || end.All.Requests == 0 {
		t.Fatalf("bake after a restart: the reference has %d requests (%d before the restart, METRICS holds %d), %d of the new group's judged", end.Same.Old.Requests, ref.Same.Old.Requests, held, end.All.Requests)
	}
	if r := p.record(v2); r.Phase != release.PhaseCompleted {
		t.Fatalf("phase %s", r.Phase)
	}
	if rt := p.route(); rt.Weights["hello-v002"] != routes.MaxWeight || rt.Weights["hello-v001"] != 0 {
		t.Fatalf("after the bake the new group has all the traffic, not %v", rt.Weights)
	}
}

// metricsHeld counts the requests of a group's samples METRICS still holds.
func (p *pipeline) metricsHeld(group string) uint64 {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n uint64
	if err := natsx.ReadAll(ctx, p.js, topology.StreamMetrics, []string{subjects.GroupSamples("hello", group)}, func(m jetstream.Msg) {
		var s metrics.Sample
		if json.Unmarshal(m.Data(), &s) == nil {
			n += s.Requests
		}
	}); err != nil {
		p.t.Fatal(err)
	}
	return n
}

// TestCalibrate: `redblack canary calibrate` on a service that runs v1
// with a 0.5 % background error rate launches two groups of v1, judges them
// with the service's strategy on real traffic, reports a pass and how close
// it came, emits calibrated, and leaves v1 alone with all the traffic, the
// lock free and nothing else running. Before anything runs it is rejected.
// With two instances a group, the router's samples carry their counts by
// instance and the report gives the spread the judge measured between
// them.
func TestCalibrate(t *testing.T) {
	svc := bench.NewSpec("hello", "t", hello).LatencySlack(testkit.LatencySlack).CanaryCapacity(2).Build()
	p := newPipeline(t, t.TempDir(), svc)
	var out, errb strings.Builder
	if code := cli.Main([]string{"--server", p.m.URL(), "--creds", p.m.AdminCreds(), "canary", "calibrate", "hello", "--timeout", "30s"}, &out, &errb); code != 1 || !strings.Contains(out.String()+errb.String(), "nothing of hello runs yet") {
		t.Fatalf("calibrate before a release: %d %s %s", code, out.String(), errb.String())
	}
	v1 := p.release("v1", "--error-rate", "0.005")
	p.await(v1, 60*time.Second, events.ReleaseCompleted)
	p.startLoad()
	p.served(2000)
	before := p.route()

	out.Reset()
	errb.Reset()
	code := cli.Main([]string{"--server", p.m.URL(), "--creds", p.m.AdminCreds(), "canary", "calibrate", "hello", "--duration", "4s", "--timeout", "60s"}, &out, &errb)
	t.Log(out.String())
	if code != 0 || !strings.Contains(out.String(), "A/A calibration of hello: passed") || !strings.Contains(out.String(), "closest approach") ||
		!strings.Contains(out.String(), "spread between instances") || strings.Contains(out.String(), "not measured") {
		t.Fatalf("calibrate: exit %d: %s %s", code, out.String(), errb.String())
	}
	// the CLI saw calibrated on its own subscription: the test's tap may
	// get it a moment later
	var id string
	for deadline := time.Now().Add(10 * time.Second); id == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no calibrated event")
		}
		p.mu.Lock()
		for _, ev := range p.events {
			if ev.Type == events.Calibrated.Type() {
				id = ev.ReleaseID
			}
		}
		p.mu.Unlock()
	}
	var cal events.Calibration
	_ = p.await(id, time.Second, events.Calibrated).DecodeData(&cal)
	if !cal.Passed || cal.Duration != 4*time.Second || cal.Report.Metrics[0].BaselineSamples < 500 || cal.ClosestMetric == "" {
		t.Fatalf("calibration: %+v", cal)
	}
	for _, m := range cal.Report.Metrics {
		if m.BaselineInstances != 2 || m.CanaryInstances != 2 || m.PlacementDF != 2 {
			t.Errorf("%s: instances %d / %d, placement df %d; want 2 / 2 and 2", m.Name, m.BaselineInstances, m.CanaryInstances, m.PlacementDF)
		}
	}
	p.await(id, 30*time.Second, events.RolledBack)
	r := p.record(id)
	if !r.Calibration || r.Outcome != "calibrated" {
		t.Fatalf("record: %+v", r)
	}
	if gs := p.groups(); len(gs) != 1 || gs[0] != "hello-v001" {
		t.Fatalf("groups after the calibration: %v", gs)
	}
	if after := p.route(); after.Active != before.Active || after.Weights["hello-v001"] != before.Weights["hello-v001"] {
		t.Fatalf("route: %+v, before %+v", after, before)
	}
	if _, _, err := p.releases.Lock(context.Background(), "hello"); err == nil {
		t.Fatal("lock held after the calibration")
	}
	if n := p.failures(); n > 0 {
		t.Logf("%d failed requests: the service's own 0.5%% (load counts 500s)", n)
	}
}

// TestCanaryWithoutTrafficEndsAtItsDuration: a canary of a service that
// gets no request does not wait for its deadline (issue 27: a 6 s canary
// was still in canary after 40 s): it ends at its duration and grace,
// failed as inconclusive with the request counts in the reason (the judge's
// test, TestNoTraffic, has allow_no_traffic passing it).
func TestCanaryWithoutTrafficEndsAtItsDuration(t *testing.T) {
	svc := fastSpec()
	svc.Strategy.Canary.Duration = spec.Duration(3 * time.Second)
	svc.Strategy.Canary.Interval = spec.Duration(500 * time.Millisecond)
	svc.Strategy.Deadlines.Canary = spec.Duration(10 * time.Minute)
	p := newPipeline(t, t.TempDir(), svc)
	p.await(p.release("v1"), 60*time.Second, events.ReleaseCompleted) // no load: no request at all

	v2 := p.release("v2")
	started := p.await(v2, 30*time.Second, events.CanaryStarted)
	grace := spec.NoDataGrace(3*time.Second, 500*time.Millisecond)
	failed := p.await(v2, 3*time.Second+grace+30*time.Second, events.CanaryFailed)
	if took := failed.Time.Sub(started.Time); took > 3*time.Second+grace+5*time.Second {
		t.Errorf("the canary without traffic ended %s after it started; its duration and grace are %s", took, 3*time.Second+grace)
	}
	var res events.CanaryResult
	_ = failed.DecodeData(&res)
	if !strings.Contains(res.Reason, "inconclusive") || !strings.Contains(res.Reason, "0 baseline and 0 canary requests") {
		t.Fatalf("reason: %q", res.Reason)
	}
	p.await(v2, 30*time.Second, events.RolledBack)
}

// TestBakeUnderCPUHog: the bake judges the new group against the old
// group's slice of the traffic over the same seconds. A CPU hog started on
// the machine 10 s into the bake of a healthy v2 (busy processes, one per
// core, for 15 s) slows both groups alike, and v2 completes; under the same
// hog a v3 whose p99 is 50 % higher (10 % of its requests 12 ms slower,
// the same median) is still rolled back by the bake (45 s). The canary judges errors
// only here, so the bake is the one guard on latency, and the watchdog
// runs with its default latency slack (5 ms), not the tests' 50 ms.
func TestBakeUnderCPUHog(t *testing.T) {
	svc := fastSpec()
	svc.Strategy.Canary.Metrics = []spec.MetricCheck{{Name: spec.MetricErrorRate, Direction: "increase", Tolerance: 0.01, Critical: true, Weight: 1}}
	svc.Strategy.Bake.Duration = spec.Duration(45 * time.Second)
	cfg := mesh.DefaultConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(); testkit.KillAll(hello) })
	p := &pipeline{t: t, m: m}
	p.attach(svc)
	flags := []string{"--latency", "20ms", "--jitter", "3ms"}
	v1 := p.release("v1", flags...)
	p.await(v1, 60*time.Second, events.ReleaseCompleted)
	p.startLoad()
	more := bench.StartLoad(p.m.HTTP(), "hello", 8, nil, nil) // about 500 requests a second in all
	t.Cleanup(func() { more.Stop() })

	// hog starts one busy process per core 10 s after the release's
	// switch, for 15 s (stopped at the end of the test whatever happens)
	hog := func(id string) {
		p.await(id, 60*time.Second, events.TrafficSwitched)
		if rt := p.route(); rt.Weights[rt.Previous] != 100 {
			t.Fatalf("during the bake the old group keeps 10%% of the traffic: %v", rt.Weights)
		}
		time.Sleep(10 * time.Second) // the hog's start in the bake is the scenario, not a wait for a condition
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		t.Cleanup(cancel)
		for range runtime.NumCPU() {
			c := exec.CommandContext(ctx, "sh", "-c", "while :; do :; done")
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { _ = c.Wait() }()
			t.Cleanup(func() { _ = c.Process.Kill() })
		}
		t.Logf("CPU hog: %d busy processes from 10 s into %s's bake, for 15 s", runtime.NumCPU(), id)
	}

	v2 := p.release("v2", flags...)
	hog(v2)
	if ev := p.await(v2, 90*time.Second, events.ReleaseCompleted, events.RolledBack); ev.Type != events.ReleaseCompleted.Type() {
		t.Fatalf("a healthy v2 under a CPU hog: %s (%s)", ev.Type, p.record(v2).Reason)
	}
	bake, _ := watchdog.DecodeBake(p.record(v2).BakeCheckpoint)
	t.Logf("v2 baked: old group's slice %d requests, new group %d", bake.Same.Old.Requests, bake.Same.New.Requests)

	v3 := p.release("v3", append(flags, "--tail-rate", "0.1", "--tail-latency", "12ms")...)
	hog(v3)
	if ev := p.await(v3, 90*time.Second, events.ReleaseCompleted, events.RolledBack); ev.Type != events.RolledBack.Type() {
		t.Fatalf("v3 with a 50%% higher p99 completed under a CPU hog")
	}
	r := p.record(v3)
	t.Logf("v3: %s", r.Reason)
	if !strings.Contains(r.Reason, "bake: p99 latency") || !strings.Contains(r.Reason, "over the same seconds") {
		t.Fatalf("v3 rolled back for another reason: %s", r.Reason)
	}
}

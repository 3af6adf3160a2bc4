package phase

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/services/canary/judge"
	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
)

// asSample turns simulated totals into one router sample.
func asSample(t metrics.Totals) metrics.Sample {
	return metrics.Sample{Requests: t.Requests, Status5xx: t.Errors, Status2xx: t.Requests - t.Errors, BucketsMicros: t.Bounds, Latency: t.Latency}
}

// looks feeds n looks of (base, canary) groups drawn by mk and returns the
// outcome and the look it came at.
func feed(j *Judge, n int, mk func(i int) (metrics.Totals, metrics.Totals)) (Outcome, int, string) {
	for i := range n {
		b, c := mk(i)
		j.Add(asSample(b), true)
		j.Add(asSample(c), false)
		res, out := j.Look(i+1 == n, i+1 == n)
		if out != Undecided {
			return out, i + 1, res.Reason
		}
	}
	return Undecided, n, ""
}

func TestJudgeLook(t *testing.T) {
	cs := canarySpec() // 10 looks
	cases := []struct {
		name     string
		base     func(r *rand.Rand) metrics.Totals
		canary   func(r *rand.Rand) metrics.Totals
		want     Outcome
		maxLooks int
		reason   string
	}{
		{"identical: passes at the end", func(r *rand.Rand) metrics.Totals { return group(r, 500, 10, 2) }, func(r *rand.Rand) metrics.Totals { return group(r, 500, 10, 2) }, Passed, 10, "reaches the pass score"},
		{"0 against 30 errors a look: fails at once", func(r *rand.Rand) metrics.Totals { return group(r, 500, 10, 0) }, func(r *rand.Rand) metrics.Totals { return group(r, 500, 10, 30) }, Failed, 1, "error_rate High"},
		{"twice as slow: fails early", func(r *rand.Rand) metrics.Totals { return group(r, 500, 10, 0) }, func(r *rand.Rand) metrics.Totals { return group(r, 500, 20, 0) }, Failed, 3, "latency_p50 High"},
		{"50% slower at 0.2 ms: under the 1 ms floor", func(r *rand.Rand) metrics.Totals { return group(r, 500, 0.2, 0) }, func(r *rand.Rand) metrics.Totals { return group(r, 500, 0.3, 0) }, Passed, 10, ""},
		{"too few requests: fails at the deadline", func(r *rand.Rand) metrics.Totals { return group(r, 2, 10, 0) }, func(r *rand.Rand) metrics.Totals { return group(r, 2, 10, 0) }, Failed, 10, "inconclusive: too little traffic"},
	}
	for _, c := range cases {
		r := rand.New(rand.NewPCG(1, 2))
		out, at, reason := feed(NewJudge(cs), 10, func(int) (metrics.Totals, metrics.Totals) { return c.base(r), c.canary(r) })
		if out != c.want || at > c.maxLooks || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: outcome %v at look %d, reason %q", c.name, out, at, reason)
		}
	}
}

// TestNoTraffic: a canary that never gets min_samples requests is never
// passed silently: inconclusive, with the counts, unless the spec allows
// no traffic.
func TestNoTraffic(t *testing.T) {
	cs := canarySpec()
	none := func(int) (metrics.Totals, metrics.Totals) {
		r := rand.New(rand.NewPCG(5, 6))
		return group(r, 0, 10, 0), group(r, 0, 10, 0)
	}
	if out, _, reason := feed(NewJudge(cs), 10, none); out != Failed || !strings.Contains(reason, "inconclusive") || !strings.Contains(reason, "0 baseline and 0 canary requests") {
		t.Fatalf("no traffic: %v %q", out, reason)
	}
	cs.AllowNoTraffic = true
	if out, _, reason := feed(NewJudge(cs), 10, none); out != Passed || !strings.Contains(reason, "allow_no_traffic") {
		t.Fatalf("no traffic, allowed: %v %q", out, reason)
	}
}

// TestEarlyPass: with early_pass, a canary shown to be within every
// tolerance ends before its duration; without, it runs to the end.
func TestEarlyPass(t *testing.T) {
	cs := canarySpec()
	mk := func(r *rand.Rand) func(int) (metrics.Totals, metrics.Totals) {
		return func(int) (metrics.Totals, metrics.Totals) { return group(r, 20000, 10, 0), group(r, 20000, 10, 0) }
	}
	out, at, _ := feed(NewJudge(cs), 10, mk(rand.New(rand.NewPCG(3, 4))))
	if out != Passed || at != 10 {
		t.Fatalf("without early pass: %v at look %d", out, at)
	}
	cs.EarlyPass = true
	out, at, reason := feed(NewJudge(cs), 10, mk(rand.New(rand.NewPCG(3, 4))))
	if out != Passed || at >= 10 || !strings.Contains(reason, "passed early") {
		t.Fatalf("with early pass: %v at look %d (%s)", out, at, reason)
	}
}

// TestCheckpointResumes: a judge stopped half way and rebuilt from its
// checkpoint (as after a restart) decides exactly as one that never
// stopped.
func TestCheckpointResumes(t *testing.T) {
	cs := canarySpec()
	draw := func() []Look {
		sc := Scenario{Baseline: metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}, Canary: metrics.Synthetic{ErrorRate: 0.015, MedianMs: 20, Sigma: 0.5}, PerLook: 600}
		return sc.Looks(rand.New(rand.NewPCG(9, 9)), cs)
	}
	whole, out, at := Replay(cs, draw())
	looks := draw()
	j := NewJudge(cs)
	for i := range 3 {
		j.Add(looks[i].Baseline, true)
		j.Add(looks[i].Canary, false)
		if _, o := j.Look(false, false); o != Undecided {
			t.Fatalf("decided at look %d: pick a later failure", i+1)
		}
	}
	b, err := json.Marshal(j.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := DecodeCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	k := NewJudge(cs)
	k.Checkpoint = cp
	var res2 Outcome
	var at2 int
	for i := 3; i < len(looks); i++ {
		k.Add(looks[i].Baseline, true)
		k.Add(looks[i].Canary, false)
		r, o := k.Look(i+1 >= 10, i+1 >= len(looks))
		if o != Undecided {
			res2, at2 = o, i+1
			if r.Reason != whole.Reason {
				t.Fatalf("resumed reason %q, uninterrupted %q", r.Reason, whole.Reason)
			}
			break
		}
	}
	if res2 != out || at2 != at {
		t.Fatalf("resumed: %v at %d; uninterrupted: %v at %d", res2, at2, out, at)
	}
}

func TestDecodeCheckpointRefusesBadShapes(t *testing.T) {
	for _, bad := range []string{
		`{"state":{"bounds":[100],"base":[1,1],"can":[1,1]}}`,
		`{"state":{"bounds":[100,200],"base":[1],"can":[1,1,1]}}`,
		`{"state":{"bounds":[200,100],"base":[1,1,1],"can":[1,1,1]}}`,
		`{"state":{},"extra":1}`,
		`{"final":{"error_rate":{"classification":"Worse","z":1,"critical":2}}}`,
		`not json`,
		strings.Repeat(" ", MaxCheckpointBytes+1),
	} {
		if _, err := DecodeCheckpoint([]byte(bad)); err == nil {
			t.Errorf("accepted %.60q", bad)
		}
	}
}

// TestWholeCanaryFigures pins the seeded figures `redblack bench judge`
// prints (a smaller number of trials): healthy canaries of a service with a
// 0.5 % background error rate fail far under 1 % with the sequential judge
// and about a quarter of the time with the fixed-horizon one it replaced;
// regressions are caught.
func TestWholeCanaryFigures(t *testing.T) {
	cs := canarySpec()
	healthy := metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}
	cases := []struct {
		name     string
		canary   metrics.Synthetic
		fixed    bool
		new, old float64
	}{
		{"healthy 0.5%", healthy, true, 0, 0.345},
		{"+1 point of errors", metrics.Synthetic{ErrorRate: 0.015, MedianMs: 20, Sigma: 0.5}, false, 0.995, 0}, // 0.945 on the sequence alone, before the test at the end
		{"+20% p50", metrics.Synthetic{ErrorRate: 0.005, MedianMs: 24, Sigma: 0.5}, false, 1, 0},
		{"+50% p99", metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.67432}, false, 1, 0},
	}
	for _, c := range cases {
		f := Simulate(cs, Scenario{Baseline: healthy, Canary: c.canary, PerLook: 600}, 200, 11, c.fixed)
		if f.Failed != c.new || c.fixed && f.FixedFailed != c.old {
			t.Errorf("%s: sequential failed %.3f, fixed %.3f (pinned %.3f, %.3f)", c.name, f.Failed, f.FixedFailed, c.new, c.old)
		}
	}
}

// FuzzCheckpoint: whatever a record's checkpoint holds, decoding it and
// judging on from it must not panic.
func FuzzCheckpoint(f *testing.F) {
	cs := canarySpec()
	j := NewJudge(cs)
	sc := Scenario{Baseline: metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}, Canary: metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}, PerLook: 100}
	for _, l := range sc.Looks(rand.New(rand.NewPCG(1, 1)), cs)[:2] {
		j.Add(l.Baseline, true)
		j.Add(l.Canary, false)
		j.Look(false, false)
	}
	b, _ := json.Marshal(j.Checkpoint)
	f.Add(b)
	// with counts by instance (five a group)
	sc.Instances, sc.Spread = 5, 0.1
	j = NewJudge(cs)
	for _, l := range sc.Looks(rand.New(rand.NewPCG(1, 2)), cs)[:2] {
		j.Add(l.Baseline, true)
		j.Add(l.Canary, false)
		j.Look(false, false)
	}
	b, _ = json.Marshal(j.Checkpoint)
	f.Add(b)
	f.Add([]byte(`{"state":{"bounds":[100,200],"base":[1,2,3],"can":[0,0,0],"up":{"latency_p50":{"base_n":-5}}}}`))
	f.Add([]byte(`{"state":{"inst":{"error_rate":{"base":{"a":{"e":5,"n":2}},"can":{"b":{"e":1,"n":1e308}}},"latency_p50":null}}}`))
	// the analysis templates' evidence, half there (a ratio's last reading
	// without its first, a value's looks without a reading)
	f.Add([]byte(`{"providers":{"orders/orders_per_request":{"last":[1,2,3,4]},"latency/app_p99":{"looks":5}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := DecodeCheckpoint(b)
		if err != nil {
			return
		}
		k := NewJudge(cs)
		k.Analyze([]analysis.Template{ordersTemplate, p99Template}, cs.Interval.D(), analysis.Vars{Group: "c"})
		k.Checkpoint = cp
		k.Look(false, false)
		k.Observe(analysis.Readings{"orders/orders_per_request": {Values: []float64{1, 2, 3, 4}}, "latency/app_p99": {Values: []float64{1, 2}}})
		k.Add(metrics.Sample{Requests: 10, Status2xx: 10, BucketsMicros: []int64{100, 200}, Latency: []uint64{3, 3, 4}}, true)
		k.Add(metrics.Sample{Requests: 10, Status5xx: 10, BucketsMicros: metrics.RouterBounds, Latency: make([]uint64, 73)}, false)
		k.Look(true, true)
	})
}

// TestPlacementIsNotTheVersion: canaries of the same version whose five
// instances a group sit ±50 % apart in median latency. The judge on
// requests alone fails many of them (it blames the version for the
// instances' draw); with the placement guard they pass, on the same draws.
// A version 20 % slower on every instance still fails.
func TestPlacementIsNotTheVersion(t *testing.T) {
	cs := canarySpec()
	base := metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}
	const trials = 200
	aa := Simulate(cs, Scenario{Baseline: base, Canary: base, PerLook: 600, Instances: 5, Spread: 0.5}, trials, 11, false)
	t.Logf("same version, instances ±50%% apart: %.1f%% failed, %.1f%% on requests alone", 100*aa.Failed, 100*aa.Unguarded)
	if aa.Failed > 0.025 || aa.Unguarded < 0.15 {
		t.Errorf("failed %.1f%% (want ≤ 2.5%%), on requests alone %.1f%% (want ≥ 15%%: else the scenario tests nothing)", 100*aa.Failed, 100*aa.Unguarded)
	}
	slower := base
	slower.MedianMs = 24
	up := Simulate(cs, Scenario{Baseline: base, Canary: slower, PerLook: 600, Instances: 5}, trials, 12, false)
	if up.Failed < 0.95 {
		t.Errorf("+20%% p50 on every instance failed %.1f%% of canaries", 100*up.Failed)
	}
}

// TestFinalTestTakenOnce: the test at the end is taken at the first look
// at the end with every metric's requests, and only then: looks in the
// grace after it (a template waiting for data, say) do not test again on
// more data, which would spend its half of the budget again. It fails
// +1 point of errors that the sequence alone has not failed by then.
func TestFinalTestTakenOnce(t *testing.T) {
	cs := canarySpec()
	j := NewJudge(cs)
	r := rand.New(rand.NewPCG(3, 4))
	b, c := metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}.Generator(), metrics.Synthetic{ErrorRate: 0.015, MedianMs: 20, Sigma: 0.5}.Generator()
	at := time.Unix(1_700_000_000, 0)
	add := func(n int) {
		j.Add(b.Sample(r, n, "s", "b", at, at.Add(time.Second)), true)
		j.Add(c.Sample(r, n, "s", "c", at, at.Add(time.Second)), false)
	}
	add(2500) // not yet conclusive for the sequence at its half of the budget
	if _, out := j.Look(false, false); out != Undecided || j.Checkpoint.Final != nil {
		t.Fatalf("before the end: %v, final %v", out, j.Checkpoint.Final)
	}
	add(2500)
	res, out := j.Look(true, false)
	final := j.Checkpoint.Final[spec.MetricErrorRate]
	if final.Classification != judge.High || out != Failed || !strings.Contains(res.Reason, "the test at the end of the duration") {
		t.Fatalf("at the end: %v %+v: %s", out, final, res.Reason)
	}
	add(50000)
	j.Look(true, false)
	if again := j.Checkpoint.Final[spec.MetricErrorRate]; again != final {
		t.Fatalf("the test at the end was taken again: %+v, then %+v", final, again)
	}
}

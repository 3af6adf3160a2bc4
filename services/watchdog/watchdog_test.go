package watchdog

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
)

func defaultRules() (Rules, Config) {
	s := spec.Service{Name: "x", Owner: "o", Capacity: 1, MaxCapacity: 10}
	s.Default()
	cfg := DefaultConfig()
	return RulesOf(s.Strategy.Bake, cfg), cfg
}

var t0 = time.Unix(1_700_000_000, 0).UTC()

var typical = metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}

// bakeOf is a bake of secs seconds at 1,000 requests a second: 100 of them
// to the old group's slice (old), 900 to the new group (neu); slow, if not
// nil, says which seconds both groups are twice as slow in (a neighbour).
func bakeOf(rules Rules, old, neu metrics.Synthetic, secs int, slow func(int) bool) Bake {
	r := rand.New(rand.NewPCG(5, 6))
	b := Bake{Switched: t0}
	for i := range secs {
		o, n := old, neu
		if slow != nil && slow(i) {
			o.MedianMs, n.MedianMs = 2*o.MedianMs, 2*n.MedianMs
		}
		at := t0.Add(time.Duration(i) * time.Second)
		rules.Add(&b, o.Generator().Sample(r, 100, "x", "old", at, at.Add(time.Second)), true)
		rules.Add(&b, n.Generator().Sample(r, 900, "x", "new", at, at.Add(time.Second)), false)
	}
	return b
}

func TestRules(t *testing.T) {
	rules, _ := defaultRules()
	slo := rules
	slo.MaxLatency = 40 * time.Millisecond // under the typical p99 of 64 ms
	neighbour := func(i int) bool { return i >= 10 && i < 15 }
	cases := []struct {
		name   string
		rules  Rules
		neu    metrics.Synthetic
		secs   int
		slow   func(int) bool
		baking bool
		want   string
	}{
		{"healthy, 60 s", rules, typical, 60, nil, true, ""},
		{"both twice as slow for 5 s (a neighbour)", rules, typical, 60, neighbour, true, ""},
		{"+3 points of errors, 30 s", rules, metrics.Synthetic{ErrorRate: 0.035, MedianMs: 20, Sigma: 0.5}, 30, nil, true, "above the old group's"},
		{"10% errors: above the ceiling", rules, metrics.Synthetic{ErrorRate: 0.10, MedianMs: 20, Sigma: 0.5}, 30, nil, false, "above the ceiling"},
		{"twice the p99, 30 s", rules, metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.8}, 30, nil, true, "p99 latency"},
		{"twice the p99 after the bake: no reference left", rules, metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.8}, 30, nil, false, ""},
		{"p99 above the objective after the bake", slo, typical, 30, nil, false, "above the objective 40ms"},
	}
	for _, c := range cases {
		got := c.rules.Check(bakeOf(c.rules, typical, c.neu, c.secs, c.slow), c.baking)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: %q", c.name, got)
		}
	}
	// a sub-millisecond service whose p99 doubles by less than the slack
	fast := metrics.Synthetic{MedianMs: 0.3, Sigma: 0.3}
	if got := rules.Check(bakeOf(rules, fast, metrics.Synthetic{MedianMs: 0.3, Sigma: 0.6}, 20, nil), true); got != "" {
		t.Errorf("a p99 rise under the slack: %q", got)
	}
}

// TestNeighbourIsNotTheRelease: both groups twice as slow for 5 s after
// the switch, at 200 and 2,000 requests a second. The past rules (the 30 s
// before the switch as the reference) roll it back; the same-time ones do
// not.
func TestNeighbourIsNotTheRelease(t *testing.T) {
	rules, _ := defaultRules()
	for _, rate := range []int{200, 2000} {
		sc := BakeScenario{Old: typical, New: typical, RatePerSecond: rate, ReferenceWeight: 10, Duration: time.Minute,
			Neighbour: Neighbour{Factor: 2, At: 10 * time.Second, For: 5 * time.Second}}
		f := SimulateBake(rules, sc, 50, 3)
		if f.RolledBack != 0 || f.PastRolledBack < 0.9 {
			t.Errorf("%d/s: same-time rules rolled back %.2f (want 0), past rules %.2f (want ≥ 0.9)", rate, f.RolledBack, f.PastRolledBack)
		}
	}
}

// TestWindows: a degradation that starts after a long healthy watch is
// judged within its window; the window index and span follow the samples.
func TestWindows(t *testing.T) {
	rules, _ := defaultRules()
	b := bakeOf(rules, typical, typical, 600, nil)
	if b.WindowIndex != 60 || b.Window.Requests != 9_000 {
		t.Fatalf("window %d with %d requests", b.WindowIndex, b.Window.Requests)
	}
	r := rand.New(rand.NewPCG(7, 7))
	g := metrics.Synthetic{ErrorRate: 0.07, MedianMs: 20, Sigma: 0.5}.Generator()
	for i := 600; i < 610; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		rules.Add(&b, g.Sample(r, 1000, "x", "new", at, at.Add(time.Second)), false)
	}
	if got := rules.Check(b, false); !strings.Contains(got, "in window 61") {
		t.Fatalf("a late degradation: %q", got)
	}
}

func TestBakeCheckpoint(t *testing.T) {
	rules, _ := defaultRules()
	b := bakeOf(rules, typical, typical, 20, nil)
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeBake(raw)
	if err != nil {
		t.Fatal(err)
	}
	if back.Same.Old.Requests != 2000 || back.Same.Tail != b.Same.Tail || back.All.Requests != b.All.Requests || back.WindowIndex != b.WindowIndex {
		t.Fatalf("round trip: %+v", back.Same)
	}
	for _, bad := range []string{`{"all":{"latency":{"Bounds":[100],"Latency":[1,1]}}}`, `{"same":{"tail":{"base_events":5,"base_n":1}}}`, `{"reference":{}}`, `{"nope":1}`, `[`} {
		if _, err := DecodeBake([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestBakeFigures pins seeded figures `redblack bench judge` prints (fewer
// trials): no healthy bake rolled back, degradations caught in seconds at
// 2,000 requests a second.
func TestBakeFigures(t *testing.T) {
	rules, _ := defaultRules()
	sc := BakeScenario{Old: typical, New: typical, RatePerSecond: 2000, ReferenceWeight: 10, Duration: time.Minute}
	if f := SimulateBake(rules, sc, 100, 1); f.RolledBack != 0 || f.PastRolledBack != 0 {
		t.Fatalf("healthy bakes rolled back: %.2f (past rules %.2f)", f.RolledBack, f.PastRolledBack)
	}
	sc.Bad = metrics.Synthetic{ErrorRate: 0.015, MedianMs: 20, Sigma: 0.5}
	f := SimulateBake(rules, sc, 100, 2)
	if f.RolledBack != 1 || f.MedianDetect > 30*time.Second {
		t.Fatalf("+1 point: rolled back %.2f, median %s", f.RolledBack, f.MedianDetect)
	}
	t.Logf("+1 point at 2,000/s: caught in %s (past rules: %s)", f.MedianDetect, f.PastMedianDetect)
}

func FuzzDecodeBake(f *testing.F) {
	rules, _ := defaultRules()
	raw, _ := json.Marshal(bakeOf(rules, typical, typical, 5, nil))
	f.Add(raw)
	f.Add([]byte(`{"same":{"old":{"requests":5,"latency":{"Bounds":[100,200],"Latency":[1,2,3]}}},"all":{"requests":4,"errors":9}}`))
	// the templates' evidence, half there
	f.Add([]byte(`{"providers":{"jobs/jobs_failed":{"first":[1,2,3,4],"last":[0,1,2,3],"readings":2},"jobs/p99":{"looks":5,"above":9}}}`))
	tj := &analysis.Judge{Alpha: 0.001, MinSamples: 50}
	tj.Add([]analysis.Template{{Name: "jobs", Metrics: []analysis.Metric{
		{Name: "jobs_failed", Provider: analysis.ProviderWeb, Kind: analysis.KindRatio, Events: "$.f", Total: "$.t", Direction: "increase", Tolerance: 0.05},
		{Name: "p99", Provider: analysis.ProviderWeb, Kind: analysis.KindValue, Query: "$.p", Direction: "either", Tolerance: 0.1},
	}}})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeBake(b)
		if err != nil {
			return
		}
		_ = tj.Look(k.Providers) // nor the templates' judge
		for _, baking := range []bool{true, false} {
			_ = rules.Check(k, baking) // whatever the record held, the check must not panic
		}
		rules.Add(&k, metrics.Sample{Requests: 3, Status5xx: 1, BucketsMicros: []int64{100}, Latency: []uint64{5, 5}}, true)
		rules.Add(&k, metrics.Sample{Requests: 3, Status5xx: 1, BucketsMicros: []int64{100}, Latency: []uint64{5, 5}}, false)
		_ = rules.Check(k, true)
	})
}

func TestRedriveSchedule(t *testing.T) {
	m := time.Minute
	cases := []struct {
		over           time.Duration
		attempt, stuck int
	}{
		{m, -1, -1}, {2 * m, 0, 0}, {2*m + 59*time.Second, 0, 0}, {3 * m, 1, 1}, {5 * m, 2, 3},
		{9 * m, 3, 7}, {17 * m, 4, 15}, {25 * m, 5, 23}, {33 * m, 6, 31},
	}
	for _, c := range cases {
		if a, s := Redrive(c.over, 2*m, m); a != c.attempt || s != c.stuck {
			t.Errorf("%s into rolling_back: attempt %d, stuck %d; want %d, %d", c.over, a, s, c.attempt, c.stuck)
		}
	}
}

package watchdog

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
)

func defaultRules() (Rules, Config) {
	s := spec.Service{Name: "x", Owner: "o", Capacity: 1, MaxCapacity: 10}
	s.Default()
	b := s.Strategy.Bake
	cfg := DefaultConfig()
	return RulesFor(b.Confidence, b.MaxErrorRate, b.ErrorTolerance, b.MaxLatencyRatio, cfg), cfg
}

var t0 = time.Unix(1_700_000_000, 0).UTC()

// bakeOf is a bake whose reference is 30 s of old at 1000/s and whose new
// group served secs seconds of neu.
func bakeOf(old, neu metrics.Synthetic, secs int, cfg Config) Bake {
	r := rand.New(rand.NewPCG(5, 6))
	b := Bake{Switched: t0}
	g, h := old.Generator(), neu.Generator()
	for i := -30; i < 0; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		b.Reference.Add(g.Sample(r, 1000, "x", "old", at, at.Add(time.Second)))
	}
	for i := range secs {
		at := t0.Add(time.Duration(i) * time.Second)
		b.Add(h.Sample(r, 1000, "x", "new", at, at.Add(time.Second)), cfg.Warmup, cfg.Window)
	}
	return b
}

func TestRules(t *testing.T) {
	rules, cfg := defaultRules()
	old := metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}
	cases := []struct {
		name string
		neu  metrics.Synthetic
		secs int
		want string
	}{
		{"healthy, 60 s", old, 60, ""},
		{"+3 points of errors, 10 s", metrics.Synthetic{ErrorRate: 0.035, MedianMs: 20, Sigma: 0.5}, 10, "above the old group's"},
		{"10% errors: above the ceiling too", metrics.Synthetic{ErrorRate: 0.10, MedianMs: 20, Sigma: 0.5}, 10, "error rate"},
		{"twice the p99, 10 s", metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.8}, 10, "p99 latency"},
	}
	for _, c := range cases {
		got := rules.Check(bakeOf(old, c.neu, c.secs, cfg))
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: %q", c.name, got)
		}
	}
	// a sub-millisecond service whose p99 doubles by less than the slack
	fast := metrics.Synthetic{MedianMs: 0.3, Sigma: 0.3}
	if got := rules.Check(bakeOf(fast, metrics.Synthetic{MedianMs: 0.3, Sigma: 0.6}, 20, cfg)); got != "" {
		t.Errorf("a p99 rise under the slack: %q", got)
	}
}

// TestWindows: a degradation that starts after a long healthy bake is
// judged within its window; the window index and span follow the samples.
func TestWindows(t *testing.T) {
	rules, cfg := defaultRules()
	old := metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}
	b := bakeOf(old, old, 600, cfg)
	if b.WindowIndex != 60 || b.Window.Requests != 10_000 {
		t.Fatalf("window %d with %d requests", b.WindowIndex, b.Window.Requests)
	}
	r := rand.New(rand.NewPCG(7, 7))
	g := metrics.Synthetic{ErrorRate: 0.05, MedianMs: 20, Sigma: 0.5}.Generator()
	for i := 600; i < 605; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		b.Add(g.Sample(r, 1000, "x", "new", at, at.Add(time.Second)), cfg.Warmup, cfg.Window)
	}
	if got := rules.Check(b); !strings.Contains(got, "in window 61") {
		t.Fatalf("a late degradation: %q", got)
	}
}

func TestBakeCheckpoint(t *testing.T) {
	_, cfg := defaultRules()
	old := metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}
	b := bakeOf(old, old, 20, cfg)
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeBake(raw)
	if err != nil {
		t.Fatal(err)
	}
	if back.Reference.Requests != b.Reference.Requests || back.All.Requests != b.All.Requests || back.WindowIndex != b.WindowIndex {
		t.Fatalf("round trip: %+v", back.All)
	}
	for _, bad := range []string{`{"reference":{"Bounds":[100],"Latency":[1,1]}}`, `{"nope":1}`, `[`} {
		if _, err := DecodeBake([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestBakeFigures pins seeded figures `redblack bench judge` prints (fewer
// trials): no healthy bake rolled back, degradations caught in seconds at
// 2,000 requests a second.
func TestBakeFigures(t *testing.T) {
	rules, cfg := defaultRules()
	old := metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}
	sc := BakeScenario{Old: old, New: old, RatePerSecond: 2000, Reference: 30 * time.Second, Duration: time.Minute}
	if f := SimulateBake(rules, cfg, sc, 100, 1); f.RolledBack != 0 {
		t.Fatalf("healthy bakes rolled back: %.2f", f.RolledBack)
	}
	sc.Bad = metrics.Synthetic{ErrorRate: 0.015, MedianMs: 20, Sigma: 0.5}
	f := SimulateBake(rules, cfg, sc, 100, 2)
	if f.RolledBack != 1 || f.MedianDetect != 3*time.Second {
		t.Fatalf("+1 point: rolled back %.2f, median %s (pinned 1, 3s)", f.RolledBack, f.MedianDetect)
	}
}

func FuzzDecodeBake(f *testing.F) {
	_, cfg := defaultRules()
	raw, _ := json.Marshal(bakeOf(metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}, metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}, 5, cfg))
	f.Add(raw)
	f.Add([]byte(`{"reference":{"Requests":5,"Bounds":[100,200],"Latency":[1,2,3]},"all":{"requests":4,"errors":9}}`))
	rules, _ := defaultRules()
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeBake(b)
		if err != nil {
			return
		}
		_ = rules.Check(k) // whatever the record held, the check must not panic
		k.Add(metrics.Sample{Requests: 3, Status5xx: 1, BucketsMicros: []int64{100}, Latency: []uint64{5, 5}}, cfg.Warmup, cfg.Window)
		_ = rules.Check(k)
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

package watchdog

import (
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
)

func TestBinomialTail(t *testing.T) {
	cases := []struct {
		k, n int
		p    float64
		want float64
	}{
		{0, 10, 0.01, 1},
		{1, 10, 0.01, 1 - 0.904382075}, // 1 − 0.99^10
		{2, 2, 0.5, 0.25},              // both
		{11, 10, 0.5, 0},               // impossible
		{3, 1000, 0.01, 0.99727},       // P(X ≥ 3), mean 10
		{30, 1000, 0.01, 2.06e-7},      // far in the tail (the exact sum, in Python)
	}
	for _, c := range cases {
		got := BinomialTail(c.k, c.n, c.p)
		if d := got - c.want; d > c.want*0.05+1e-9 || d < -c.want*0.05-1e-9 {
			t.Errorf("P(X≥%d | n=%d, p=%v) = %.6g, want ≈ %.6g", c.k, c.n, c.p, got, c.want)
		}
	}
}

func totals(requests, errors uint64, latency time.Duration) metrics.Totals {
	bounds := []int64{500, 1000, 2000, 4000, 8000, 16000, 32000}
	counts := make([]uint64, len(bounds)+1)
	for i, b := range bounds {
		if latency <= time.Duration(b)*time.Microsecond {
			counts[i] = requests
			break
		}
	}
	return metrics.Totals{Requests: requests, Errors: errors, Bounds: bounds, Latency: counts}
}

func TestRules(t *testing.T) {
	r := Rules{MaxErrorRate: 0.01, MaxLatencyRatio: 1.5, MinRequests: 100, Slack: 5 * time.Millisecond, Reference: totals(1000, 0, 3*time.Millisecond)}
	cases := []struct {
		name   string
		window metrics.Totals
		want   string
	}{
		{"healthy", totals(1000, 2, 3*time.Millisecond), ""},
		{"one unlucky error among a few requests", totals(20, 1, 3*time.Millisecond), ""},
		{"failing", totals(1000, 120, 3*time.Millisecond), "error rate 12.0% (120 of 1000 requests) is above the maximum 1.0%"},
		{"everything fails", totals(50, 50, 3*time.Millisecond), "error rate 100.0%"},
		{"much slower", totals(1000, 0, 30*time.Millisecond), "p99 latency"},
		{"slower, but within the slack", totals(1000, 0, 6*time.Millisecond), ""},
		{"slower, too few requests", totals(50, 0, 30*time.Millisecond), ""},
	}
	for _, c := range cases {
		got := r.Check(c.window, c.window)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	// no reference (first release): the latency rule is off
	if got := (Rules{MaxErrorRate: 0.01, MaxLatencyRatio: 1.5, MinRequests: 100}).Check(totals(1000, 0, 30*time.Millisecond), totals(1000, 0, 30*time.Millisecond)); got != "" {
		t.Errorf("without a reference: %q", got)
	}
	// slow only during the warm-up (nothing after it yet): not a failure
	if got := r.Check(totals(1000, 0, 30*time.Millisecond), metrics.Totals{}); got != "" {
		t.Errorf("slow during the warm-up: %q", got)
	}
}

func TestWindowKeepsTheSpan(t *testing.T) {
	w := Window{Span: 3 * time.Second}
	t0 := time.Unix(1000, 0)
	for i := 0; i < 10; i++ {
		w.Add(metrics.Sample{Start: t0.Add(time.Duration(i) * time.Second), End: t0.Add(time.Duration(i+1) * time.Second), Requests: 100, Status5xx: uint64(i)})
	}
	got := w.Totals()
	// samples ending at 7, 8, 9, 10 s: within 3 s of the newest
	if got.Requests != 400 || got.Errors != 6+7+8+9 {
		t.Fatalf("window: %d requests %d errors", got.Requests, got.Errors)
	}
}

func TestDeadlinePerPhase(t *testing.T) {
	d := spec.Deadlines{Canary: spec.Duration(time.Minute), Launch: spec.Duration(2 * time.Minute), Switch: spec.Duration(3 * time.Minute), Bake: spec.Duration(4 * time.Minute)}
	t0 := time.Unix(1000, 0)
	r := release.Record{}
	r.Enter(release.PhaseAccepted, t0)
	r.Enter(release.PhaseCanary, t0.Add(time.Second))
	if name, from, limit, ok := Deadline(r, d); !ok || name != "canary" || !from.Equal(t0.UTC()) || limit != time.Minute {
		t.Fatalf("canary: %s %s %s %v", name, from, limit, ok)
	}
	for _, c := range []struct {
		p     release.Phase
		name  string
		limit time.Duration
	}{{release.PhaseLaunching, "launch", 2 * time.Minute}, {release.PhaseSwitching, "switch", 3 * time.Minute}, {release.PhaseBaking, "bake", 4 * time.Minute}} {
		at := t0.Add(10 * time.Second)
		r.Enter(c.p, at)
		if name, from, limit, ok := Deadline(r, d); !ok || name != c.name || !from.Equal(at.UTC()) || limit != c.limit {
			t.Fatalf("%s: %s %s %s %v", c.p, name, from, limit, ok)
		}
	}
	for _, p := range []release.Phase{release.PhaseRollingBack, release.PhaseCompleted, release.PhaseRolledBack} {
		r.Enter(p, t0)
		if _, _, _, ok := Deadline(r, d); ok {
			t.Fatalf("%s has a deadline", p)
		}
	}
}

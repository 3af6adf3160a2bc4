package phase

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/redblack/redblack/services/canary/judge"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
)

// bounds are the router's latency buckets: 100 µs growing by 2^¼.
var bounds = func() []int64 {
	out := make([]int64, 72)
	for i := range out {
		out[i] = int64(100 * math.Pow(2, float64(i)/4))
	}
	return out
}()

// group is n requests with log-normal latency (median ms, σ 0.3) and
// errors of them failed, as the router's samples would sum them.
func group(r *rand.Rand, n int, medianMs float64, errors int) metrics.Totals {
	t := metrics.Totals{Requests: uint64(n), Errors: uint64(errors), Bounds: bounds, Latency: make([]uint64, len(bounds)+1)}
	for _, v := range judge.LogNormal(r, n, medianMs, 0.3, 1) {
		us := int64(v * 1000)
		i := 0
		for i < len(bounds) && us > bounds[i] {
			i++
		}
		t.Latency[i]++
	}
	return t
}

func canarySpec() spec.Canary {
	s := spec.Service{Name: "x", Owner: "o", Capacity: 1, MaxCapacity: 10}
	s.Default()
	return s.Strategy.Canary
}

func TestFixedHorizon(t *testing.T) {
	cs := canarySpec()
	r := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name         string
		base, canary metrics.Totals
		enough       bool
		minScore     float64
		maxScore     float64
		reason       string
	}{
		{"identical", group(r, 2000, 10, 0), group(r, 2000, 10, 0), true, 100, 100, ""},
		{"errors: 0 against 30", group(r, 2000, 10, 0), group(r, 2000, 10, 30), true, 0, 0, "error_rate High"},
		{"50% slower: p50 fails, at or below the marginal score", group(r, 2000, 10, 0), group(r, 2000, 15, 0), true, 0, 75, "latency_p50 High"},
		{"twice as slow: p50 and p99 fail", group(r, 2000, 10, 0), group(r, 2000, 20, 0), true, 0, 34, "latency_p99 High"},
		{"50% slower at 0.2 ms: under the 1 ms floor", group(r, 2000, 0.2, 0), group(r, 2000, 0.3, 0), true, 100, 100, ""},
		{"too few samples", group(r, 20, 10, 0), group(r, 20, 10, 0), false, 0, 0, "error_rate has 20 baseline and 20 canary samples of 50 needed"},
	}
	for _, c := range cases {
		res, enough := FixedHorizon(cs, c.base, c.canary)
		if enough != c.enough || res.Score < c.minScore || res.Score > c.maxScore || !strings.Contains(res.Reason, c.reason) {
			t.Errorf("%s: enough %v score %.0f reason %q", c.name, enough, res.Score, res.Reason)
		}
		if len(res.Metrics) != 3 {
			t.Errorf("%s: %d metrics in the report", c.name, len(res.Metrics))
		}
	}
}

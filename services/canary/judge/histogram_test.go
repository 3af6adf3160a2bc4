package judge

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// routerBounds are the router's latency buckets (µs): 100 µs · 2^(i/4).
var routerBounds = func() []int64 {
	out := make([]int64, 72)
	for i := range out {
		out[i] = int64(100 * math.Pow(2, float64(i)/4))
	}
	return out
}()

func bucketize(ms []float64) []uint64 {
	counts := make([]uint64, len(routerBounds)+1)
	for _, v := range ms {
		us := int64(v * 1000)
		counts[sort.Search(len(routerBounds), func(i int) bool { return us <= routerBounds[i] })]++
	}
	return counts
}

// The judge keeps its targets on what the router actually publishes:
// histograms, not raw latencies.
func TestJudgeOnRouterHistograms(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	trial := func(factor float64) bool {
		base := FromHistogram(routerBounds, bucketize(LogNormal(r, 500, 20, 0.5, 1)))
		can := FromHistogram(routerBounds, bucketize(LogNormal(r, 500, 20, 0.5, factor)))
		return Latency(Config{}, base, can, Increase).Classification != Pass
	}
	detected, falseFail := 0, 0
	for range 300 {
		if trial(1.2) {
			detected++
		}
		if trial(1.0) {
			falseFail++
		}
	}
	if detected < 285 || falseFail > 3 {
		t.Fatalf("from histograms: +20%% detected %d/300 (want ≥ 285), identical failed %d/300 (want ≤ 3)", detected, falseFail)
	}
}

func TestFromHistogram(t *testing.T) {
	counts := make([]uint64, len(routerBounds)+1)
	counts[40] = 4 // (10^2·2^(39/4) .. 10^2·2^10] µs
	counts[72] = 1 // +Inf
	got := FromHistogram(routerBounds, counts)
	if len(got) != 5 {
		t.Fatalf("%d samples", len(got))
	}
	for _, v := range got[:4] {
		if v*1000 <= float64(routerBounds[39]) || v*1000 > float64(routerBounds[40]) {
			t.Fatalf("%v ms outside its bucket", v)
		}
	}
	if got[4]*1000 <= float64(routerBounds[71]) {
		t.Fatalf("+Inf sample %v ms below the last bound", got[4])
	}
	big := make([]uint64, len(routerBounds)+1)
	big[10] = 1_000_000
	if n := len(FromHistogram(routerBounds, big)); n != MaxHistogramSamples {
		t.Fatalf("%d samples from a million, want the cap", n)
	}
	if FromHistogram(routerBounds, make([]uint64, 3)) != nil {
		t.Fatal("a histogram of the wrong length was read")
	}
}

package metrics

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// RouterBounds are the router's latency buckets in µs: 100 µs growing by
// 2^¼ (routing.Buckets), so synthetic samples are shaped like real ones.
var RouterBounds = func() []int64 {
	out := make([]int64, 72)
	for i := range out {
		out[i] = int64(100 * math.Pow(2, float64(i)/4))
	}
	return out
}()

// Synthetic is a simulated group for benches and seeded tests: an error
// rate and a log-normal latency (median in ms, log-scale spread σ).
type Synthetic struct {
	ErrorRate float64
	MedianMs  float64
	Sigma     float64
}

// Generator draws a Synthetic group's samples.
type Generator struct {
	g   Synthetic
	cdf []float64
}

// Generator precomputes the latency CDF at the router's bounds.
func (g Synthetic) Generator() Generator {
	cdf := make([]float64, len(RouterBounds))
	for i, b := range RouterBounds {
		z := (math.Log(float64(b)/1000) - math.Log(g.MedianMs)) / g.Sigma
		cdf[i] = 0.5 * math.Erfc(-z/math.Sqrt2)
	}
	return Generator{g, cdf}
}

// Sample draws n requests as one router sample of the window [start, end).
func (gen Generator) Sample(r *rand.Rand, n int, service, group string, start, end time.Time) Sample {
	s := Sample{Service: service, Group: group, Router: "sim", Start: start, End: end,
		BucketsMicros: slices.Clone(RouterBounds), Latency: make([]uint64, len(RouterBounds)+1)}
	for range n {
		s.Requests++
		if r.Float64() < gen.g.ErrorRate {
			s.Status5xx++
		} else {
			s.Status2xx++
		}
		s.Latency[sort.SearchFloat64s(gen.cdf, r.Float64())]++
	}
	return s
}

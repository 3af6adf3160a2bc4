package judge

import (
	"math"

	"github.com/redblack/redblack/shared/metrics"
)

// MaxHistogramSamples caps what FromHistogram expands.
const MaxHistogramSamples = 50000

// FromHistogram turns a latency histogram (upper bounds in µs, counts with
// one more for +Inf, as the router's metrics samples carry them) into
// latencies in ms for the tests above. Each bucket's count is spread evenly
// on a log scale across the bucket, so a shift smaller than a bucket still
// moves the samples; more than MaxHistogramSamples are scaled down in
// proportion.
func FromHistogram(boundsMicros []int64, counts []uint64) []float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 || len(counts) != len(boundsMicros)+1 || !metrics.ValidBounds(boundsMicros) {
		return nil
	}
	scale := 1.0
	if total > MaxHistogramSamples {
		scale = float64(MaxHistogramSamples) / float64(total)
	}
	out := make([]float64, 0, min(total, MaxHistogramSamples))
	for i, c := range counts {
		n := int(math.Round(float64(c) * scale))
		if n == 0 {
			continue
		}
		lo, hi := metrics.Edges(boundsMicros, i)
		llo, lhi := math.Log(lo), math.Log(hi)
		for k := 0; k < n; k++ {
			out = append(out, math.Exp(llo+(float64(k)+0.5)/float64(n)*(lhi-llo))/1000)
		}
	}
	return out
}

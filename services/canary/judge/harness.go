package judge

import (
	"math"
	"math/rand/v2"
)

// LogNormal draws n latencies (ms) from a log-normal distribution with the
// given median and log-scale spread, scaled by factor.
func LogNormal(r *rand.Rand, n int, medianMs, sigma, factor float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = factor * medianMs * math.Exp(sigma*r.NormFloat64())
	}
	return out
}

// LatencyFailRate is the share of trials in which the judge fails a canary
// whose latency is the baseline's times factor (1 for identical), with n
// samples per group from a log-normal of median 20 ms and σ 0.5.
func LatencyFailRate(cfg Config, factor float64, n, trials int, seed uint64) float64 {
	r := rand.New(rand.NewPCG(seed, 2))
	fails := 0
	for range trials {
		base := LogNormal(r, n, 20, 0.5, 1)
		can := LogNormal(r, n, 20, 0.5, factor)
		if Latency(cfg, base, can, Increase).Classification != Pass {
			fails++
		}
	}
	return float64(fails) / float64(trials)
}

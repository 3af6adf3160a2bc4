// Package judge is the canary's statistics. The judge the canary phase
// runs is sequential (sequential.go): every metric is a comparison of two
// rates judged on anytime-valid confidence sequences, so the whole canary
// keeps its error budget however often it looks. The fixed-horizon tests it
// replaced stay for comparison in the bench: latency by a Mann-Whitney U
// test and a Hodges-Lehmann interval on the shift (on a log scale, so a
// shift is a ratio), error counts by Fisher's exact test. Score weighs the
// metrics' classifications; a failed critical metric scores 0.
package judge

import (
	"math"
	"sort"

	"github.com/redblack/redblack/shared/spec"
)

// Classification of one metric, as Kayenta's.
type Classification string

// Classifications.
const (
	Pass   Classification = "Pass"
	High   Classification = "High"
	Low    Classification = "Low"
	NoData Classification = "NoData"
)

// Direction says which way a metric may not move.
type Direction string

// Directions.
const (
	Increase Direction = "increase" // bad when the canary is higher (latency, errors)
	Decrease Direction = "decrease" // bad when the canary is lower
	Either   Direction = "either"
)

// Config holds the judge's thresholds.
type Config struct {
	// Confidence of the latency interval (default 0.98, Kayenta's).
	Confidence float64
	// LatencyTolerance is the ratio beyond which a significant shift fails:
	// 0.10 fails a canary at least 10 % slower (default).
	LatencyTolerance float64
	// ErrorTolerance is the error rate the canary may exceed the baseline's
	// by before failing (default 0.001: one in a thousand).
	ErrorTolerance float64
	// ErrorAlpha is the significance of the exact error test (default 0.15:
	// for a critical metric a false alarm costs a rejected canary, a miss an
	// outage).
	ErrorAlpha float64
	// MinSamples per group below which a metric is NoData (default
	// spec.DefaultMinSamples).
	MinSamples int
	// MinShiftMs: a latency shift (difference of medians) smaller than
	// this passes whatever its significance (default 0: none). With
	// thousands of samples the test finds 50 µs between two processes of
	// the same version; no user feels that.
	MinShiftMs float64
}

// Defaults fills unset thresholds.
func (c Config) Defaults() Config {
	if c.Confidence == 0 {
		c.Confidence = 0.98
	}
	if c.LatencyTolerance == 0 {
		c.LatencyTolerance = 0.10
	}
	if c.ErrorTolerance == 0 {
		c.ErrorTolerance = 0.001
	}
	if c.ErrorAlpha == 0 {
		c.ErrorAlpha = 0.15
	}
	if c.MinSamples == 0 {
		c.MinSamples = spec.DefaultMinSamples
	}
	return c
}

// Result is the verdict on one metric.
type Result struct {
	Classification                 Classification
	BaselineSamples, CanarySamples int
	BaselineMedian, CanaryMedian   float64
	// Estimate, Low and High: the canary/baseline ratio and its interval
	// (latency); the canary's and baseline's error rates (errors).
	Estimate, Low, High float64
	// P is the p-value of the test.
	P float64
}

// Latency compares two latency samples (any unit, > 0).
func Latency(cfg Config, baseline, canary []float64, dir Direction) Result {
	cfg = cfg.Defaults()
	r := Result{BaselineSamples: len(baseline), CanarySamples: len(canary)}
	if len(baseline) < cfg.MinSamples || len(canary) < cfg.MinSamples {
		r.Classification = NoData
		return r
	}
	x, y := logs(baseline), logs(canary)
	r.BaselineMedian, r.CanaryMedian = math.Exp(median(x)), math.Exp(median(y))
	_, r.P = MannWhitney(x, y)
	est, lo, hi := HodgesLehmann(x, y, cfg.Confidence)
	r.Estimate, r.Low, r.High = math.Exp(est), math.Exp(lo), math.Exp(hi)
	r.Classification = Pass
	if math.Abs(r.CanaryMedian-r.BaselineMedian) < cfg.MinShiftMs {
		return r
	}
	up, down := lo > 0 && r.Estimate >= 1+cfg.LatencyTolerance, hi < 0 && r.Estimate <= 1/(1+cfg.LatencyTolerance)
	switch {
	case up && dir != Decrease:
		r.Classification = High
	case down && dir != Increase:
		r.Classification = Low
	}
	return r
}

// Errors compares error counts out of request counts with a one-sided
// exact test (Fisher's, on the 2×2 table): the canary fails when its rate
// is above the baseline's by more than the tolerance and the excess is
// significant at ErrorAlpha.
func Errors(cfg Config, baseErrors, baseN, canErrors, canN int) Result {
	cfg = cfg.Defaults()
	r := Result{BaselineSamples: baseN, CanarySamples: canN}
	if baseN < cfg.MinSamples || canN < cfg.MinSamples {
		r.Classification = NoData
		return r
	}
	rb, rc := float64(baseErrors)/float64(baseN), float64(canErrors)/float64(canN)
	r.Estimate, r.Low, r.High = rc, rb, rb
	r.BaselineMedian, r.CanaryMedian = rb, rc
	r.P = FisherGreater(canErrors, canN, baseErrors, baseN)
	r.Classification = Pass
	if rc > rb+cfg.ErrorTolerance && r.P < cfg.ErrorAlpha {
		r.Classification = High
	}
	return r
}

// Metric is one judged metric with its weight.
type Metric struct {
	Result   Result
	Weight   float64
	Critical bool
}

// Score is the weighted share of passing metrics, 0–100. A failed critical
// metric, or half or more of the weight without data, scores 0.
func Score(ms []Metric) float64 {
	var total, pass, nodata float64
	for _, m := range ms {
		w := m.Weight
		if w == 0 {
			w = 1
		}
		total += w
		switch m.Result.Classification {
		case Pass:
			pass += w
		case NoData:
			nodata += w
		default:
			if m.Critical {
				return 0
			}
		}
	}
	if total == 0 || nodata*2 >= total {
		return 0
	}
	return 100 * pass / total
}

func logs(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Log(math.Max(x, 1e-12))
	}
	return out
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MannWhitney returns U for y over x and the two-sided p-value (normal
// approximation with tie correction and continuity correction).
func MannWhitney(x, y []float64) (u, p float64) {
	n1, n2 := float64(len(x)), float64(len(y))
	type obs struct {
		v float64
		y bool
	}
	all := make([]obs, 0, len(x)+len(y))
	for _, v := range x {
		all = append(all, obs{v, false})
	}
	for _, v := range y {
		all = append(all, obs{v, true})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	var rankY, ties float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // average of ranks i+1..j
		t := float64(j - i)
		ties += t*t*t - t
		for k := i; k < j; k++ {
			if all[k].y {
				rankY += rank
			}
		}
		i = j
	}
	u = rankY - n2*(n2+1)/2
	mean := n1 * n2 / 2
	n := n1 + n2
	sd := math.Sqrt(n1 * n2 / 12 * ((n + 1) - ties/(n*(n-1))))
	if sd == 0 {
		return u, 1
	}
	z := (math.Abs(u-mean) - 0.5) / sd
	return u, math.Min(1, 2*(1-normCDF(math.Max(z, 0))))
}

// HodgesLehmann returns the median of the pairwise differences y−x and its
// distribution-free confidence interval (order statistics of the
// differences, normal approximation of the rank). The order statistics are
// found by bisection on the value with a linear count, O((n+m)·log), so no
// n·m list of differences is built.
func HodgesLehmann(x, y []float64, confidence float64) (est, lo, hi float64) {
	xs := append([]float64(nil), x...)
	ys := append([]float64(nil), y...)
	sort.Float64s(xs)
	sort.Float64s(ys)
	n1, n2 := float64(len(xs)), float64(len(ys))
	nm := len(xs) * len(ys)
	z := normQuantile(1 - (1-confidence)/2)
	k := int(math.Floor(float64(nm)/2 - z*math.Sqrt(n1*n2*(n1+n2+1)/12)))
	k = max(0, min(k, nm-1))
	med := kthDiff(xs, ys, nm/2)
	if nm%2 == 0 {
		med = (kthDiff(xs, ys, nm/2-1) + med) / 2
	}
	return med, kthDiff(xs, ys, k), kthDiff(xs, ys, nm-1-k)
}

// kthDiff is the k-th smallest (0-based) of the differences y_j − x_i of two
// sorted samples.
func kthDiff(xs, ys []float64, k int) float64 {
	lo, hi := ys[0]-xs[len(xs)-1], ys[len(ys)-1]-xs[0]
	for range 64 {
		mid := lo + (hi-lo)/2
		if countLE(xs, ys, mid) >= k+1 {
			hi = mid
		} else {
			lo = mid
		}
		if hi-lo <= 1e-12*math.Max(1, math.Abs(hi)) {
			break
		}
	}
	return hi
}

// countLE counts the differences y_j − x_i ≤ t.
func countLE(xs, ys []float64, t float64) int {
	n, j := 0, len(ys)
	for i := len(xs) - 1; i >= 0; i-- { // x falling: the bound x+t falls too
		for j > 0 && ys[j-1] > xs[i]+t {
			j--
		}
		n += j
	}
	return n
}

// FisherGreater is the one-sided p-value of Fisher's exact test that group A
// (a of n) has a higher rate than group B (b of m): P(X ≥ a) for X
// hypergeometric with a+b successes in n+m draws, n of them from A.
func FisherGreater(a, n, b, m int) float64 {
	k := a + b
	p := 0.0
	for x := a; x <= min(k, n); x++ {
		p += math.Exp(lchoose(n, x) + lchoose(m, k-x) - lchoose(n+m, k))
	}
	return math.Min(p, 1)
}

func lchoose(n, k int) float64 {
	if k < 0 || k > n {
		return math.Inf(-1)
	}
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

func normCDF(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }

// normQuantile inverts normCDF by bisection (enough for confidence levels).
func normQuantile(p float64) float64 {
	lo, hi := -10.0, 10.0
	for range 100 {
		mid := (lo + hi) / 2
		if normCDF(mid) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

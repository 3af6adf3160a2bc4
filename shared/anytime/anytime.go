// Package anytime is anytime-valid inference for rates: confidence
// sequences that hold at every look at once, for the canary judge and the
// bake.
package anytime

import "math"

// Anytime-valid inference. A canary is judged on growing data at every
// look; a fixed-horizon test repeated at each look spends its error rate
// again each time ("peeking"). A confidence sequence instead holds at every
// look at once: P(∃t: θ ∉ CS_t) ≤ α, however many looks are taken and
// whenever the procedure stops. The one here is Robbins' normal mixture
// (the mixture SPRT of Johari et al., "Always Valid Inference", and of
// Netflix's sequential canary tests, arXiv 2205.14762), for an estimate θ̂
// whose variance v shrinks as data come in (a difference of two rates):
//
//	Λ(θ0) = Σ_j w_j · sqrt(v/(v+τ_j²)) · exp(τ_j² (θ̂−θ0)² / (2v(v+τ_j²)))
//
// is a nonnegative martingale under θ0 (for Gaussian increments; for counts
// it holds by the central limit theorem, which the bench checks down to
// 100 requests a look), so by Ville's inequality P(∃t: Λ_t(θ) ≥ 1/α) ≤ α.
// The confidence sequence is {θ0: Λ(θ0) < 1/α}. The mixture over several
// τ (a grid of effect sizes, from a tenth of a point to half the scale)
// makes it fast on gross failures and still tight on subtle ones.

// MixingScales are the τ of the mixture, in the units of the difference of
// two rates (0.01 = one point), with equal weights.
var MixingScales = []float64{0.005, 0.015, 0.05, 0.3}

// logMixture is log Λ+ for the signed distance d = θ̂ − θ0 (positive: the
// bad side) and variance v, for the one-sided mixture: each τ's prior is a
// half-normal on θ > θ0, which gives Λ+ = 2·Φ(dτ/√(v(v+τ²)))·Λ_τ with
// Λ_τ = √(v/(v+τ²))·exp(τ²d²/(2v(v+τ²))). Under any θ ≤ θ0 it is a
// nonnegative supermartingale, so the one-sided null is tested as a whole.
func logMixture(d, v float64) float64 {
	if v <= 0 {
		v = 1e-18
	}
	best := math.Inf(-1)
	var buf [8]float64
	terms := buf[:0]
	if len(MixingScales) > len(buf) {
		terms = make([]float64, 0, len(MixingScales))
	}
	for _, tau := range MixingScales {
		t2 := tau * tau
		z := d * tau / math.Sqrt(v*(v+t2))
		a := 0.5*math.Log(v/(v+t2)) + t2*d*d/(2*v*(v+t2)) + math.Log(2) + logNormCDF(z)
		terms = append(terms, a)
		best = math.Max(best, a)
	}
	sum := 0.0
	for _, a := range terms {
		sum += math.Exp(a - best)
	}
	return best + math.Log(sum/float64(len(MixingScales)))
}

// logNormCDF is log Φ(z), accurate far in the lower tail.
func logNormCDF(z float64) float64 {
	if z > -30 {
		return math.Log(0.5 * math.Erfc(-z/math.Sqrt2))
	}
	return -z*z/2 - math.Log(-z) - 0.5*math.Log(2*math.Pi)
}

// Radius is how far above θ0 the estimate must be for Λ+(θ0) to reach
// 1/alpha: the one-sided confidence sequence's margin for an estimate with
// variance v. P(∃t: θ̂_t − θ > Radius_t) ≤ alpha, and the same below.
func Radius(v, alpha float64) float64 {
	if v <= 0 {
		return 0
	}
	target := math.Log(1 / alpha)
	lo, hi := 0.0, math.Sqrt(v)
	for logMixture(hi, v) < target {
		hi *= 2
	}
	for range 60 {
		mid := (lo + hi) / 2
		if logMixture(mid, v) < target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// Beyond reports whether the one-sided confidence sequence's lower bound
// est − Radius(v, alpha) is above theta0: the test behind a verdict, in one
// evaluation of the mixture instead of Radius's bisection (the mixture
// grows with the distance, so the two agree).
func Beyond(est, v, theta0, alpha float64) bool {
	return est > theta0 && logMixture(est-theta0, v) >= math.Log(1/alpha)
}

// Evidence is how far the data have gone towards rejecting θ ≤ θ0 (bad = 1)
// or θ ≥ θ0 (bad = −1), as log Λ+ / log(1/α): 1 rejects; a healthy canary
// stays well below.
func Evidence(est, v, theta0, alpha float64, bad int) float64 {
	d := (est - theta0) * float64(bad)
	return math.Max(0, logMixture(d, v)) / math.Log(1/alpha)
}

// Rates is two groups' counts of one kind of event (errors; requests past
// a latency threshold), the sufficient statistics of their comparison. A
// count may be fractional (a histogram bucket's share past a threshold).
type Rates struct {
	BaseEvents float64 `json:"base_events"`
	BaseN      float64 `json:"base_n"`
	CanEvents  float64 `json:"can_events"`
	CanN       float64 `json:"can_n"`
}

// Valid reports whether the counts can be real: finite, non-negative, and
// no more events than requests.
func (r Rates) Valid() bool {
	for _, v := range []float64{r.BaseEvents, r.BaseN, r.CanEvents, r.CanN} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return false
		}
	}
	return r.BaseEvents <= r.BaseN+1e-9 && r.CanEvents <= r.CanN+1e-9
}

// Add sums o into r.
func (r *Rates) Add(o Rates) {
	r.BaseEvents += o.BaseEvents
	r.BaseN += o.BaseN
	r.CanEvents += o.CanEvents
	r.CanN += o.CanN
}

// Diff is the estimate of canary rate − baseline rate and its variance. The
// variance uses rates smoothed by half an event (x+½)/(n+1), so that 0
// events in either group never claim certainty.
func (r Rates) Diff() (est, v float64) {
	if r.BaseN <= 0 || r.CanN <= 0 {
		return 0, math.Inf(1)
	}
	pb, pc := r.BaseEvents/r.BaseN, r.CanEvents/r.CanN
	sb, sc := (r.BaseEvents+0.5)/(r.BaseN+1), (r.CanEvents+0.5)/(r.CanN+1)
	return pc - pb, sb*(1-sb)/r.BaseN + sc*(1-sc)/r.CanN
}

// Interval is the confidence sequence on canary − baseline: each bound
// holds at level 1−alpha on its own (one-sided).
func (r Rates) Interval(alpha float64) (est, lo, hi float64) {
	est, v := r.Diff()
	if math.IsInf(v, 1) {
		return est, math.Inf(-1), math.Inf(1)
	}
	rad := Radius(v, alpha)
	return est, est - rad, est + rad
}

// OneRate is the confidence sequence of one growing group's rate (events of
// n) at level 1−alpha, with the same smoothing.
func OneRate(events, n, alpha float64) (est, lo, hi float64) {
	if n <= 0 {
		return 0, 0, 1
	}
	s := (events + 0.5) / (n + 1)
	est = events / n
	rad := Radius(s*(1-s)/n, alpha)
	return est, math.Max(0, est-rad), math.Min(1, est+rad)
}

// OneRateAbove reports whether OneRate's lower bound is above theta0 (≥ 0),
// by Beyond: without the bisection.
func OneRateAbove(events, n, theta0, alpha float64) bool {
	if n <= 0 {
		return false
	}
	s := (events + 0.5) / (n + 1)
	return Beyond(events/n, s*(1-s)/n, theta0, alpha)
}

// FixedUpper is the one-sided upper bound at level 1−alpha of a rate seen
// once, on a fixed sample (the old group's figures from before a switch):
// a normal interval on the smoothed rate.
func FixedUpper(events, n, alpha float64) float64 {
	if n <= 0 {
		return 1
	}
	s := (events + 0.5) / (n + 1)
	return math.Min(1, events/n+NormQuantile(1-alpha)*math.Sqrt(s*(1-s)/n))
}

// NormQuantile is the standard normal's p-quantile (by bisection: enough
// for confidence levels).
func NormQuantile(p float64) float64 {
	lo, hi := -40.0, 40.0
	for range 200 {
		mid := (lo + hi) / 2
		if 0.5*math.Erfc(-mid/math.Sqrt2) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

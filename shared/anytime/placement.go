package anytime

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Placement: requests are not independent. Requests served by one instance
// share its host, its neighbours and its cache, so two groups of a few
// instances each differ by their instances' draw even when they run the same
// version. The evidence about the version grows with instances, not with
// requests. Clustered keeps each group's counts by instance and estimates
// that between-instance variance (a one-way random-effects model, by the
// method of moments, pooled over both groups: both are drawn from the same
// fleet), so a difference that the instances' draw explains is not blamed on
// the version.

// MaxInstances bounds the instances counted apart per group; the counts of
// any further instance go to Other (a judge's checkpoint stays bounded
// whatever a fleet's churn).
const MaxInstances = 32

// Other is the key the counts of instances past MaxInstances, and of samples
// without a breakdown by instance, go to.
const Other = "_other"

// Count is one instance's events of n.
type Count struct {
	Events float64 `json:"e"`
	N      float64 `json:"n"`
}

// Clustered is two groups' counts of one kind of event by instance.
type Clustered struct {
	Base map[string]Count `json:"base,omitempty"`
	Can  map[string]Count `json:"can,omitempty"`
}

// Add counts events of n served by an instance of the baseline (baseline
// true) or the canary.
func (c *Clustered) Add(baseline bool, instance string, events, n float64) {
	if n <= 0 {
		return
	}
	m := &c.Can
	if baseline {
		m = &c.Base
	}
	if *m == nil {
		*m = map[string]Count{}
	}
	if _, ok := (*m)[instance]; !ok && len(*m) >= MaxInstances {
		instance = Other
	}
	k := (*m)[instance]
	k.Events += events
	k.N += n
	(*m)[instance] = k
}

// Valid reports whether the counts can be real: finite, no more events
// than trials, some trials for every instance counted (Add counts none
// without), and at most MaxInstances+1 instances a group.
func (c Clustered) Valid() bool {
	for _, m := range []map[string]Count{c.Base, c.Can} {
		if len(m) > MaxInstances+1 {
			return false
		}
		for _, k := range m {
			if k.N <= 0 || !(Rates{BaseEvents: k.Events, BaseN: k.N}).Valid() {
				return false
			}
		}
	}
	return true
}

// Rates sums the instances' counts.
func (c Clustered) Rates() Rates {
	var r Rates
	for _, k := range c.Base {
		r.BaseEvents += k.Events
		r.BaseN += k.N
	}
	for _, k := range c.Can {
		r.CanEvents += k.Events
		r.CanN += k.N
	}
	return r
}

// Instances is how many instances of each group have counts.
func (c Clustered) Instances() (base, can int) { return len(c.Base), len(c.Can) }

// group's moments: the pooled rate p, its n, Q = Σ n_i (p_i − p)² and
// Σ n_i².
func moments(m map[string]Count) (p, n, q, n2 float64, k int) {
	var e float64
	for _, c := range m {
		e += c.Events
		n += c.N
		n2 += c.N * c.N
	}
	if n <= 0 {
		return 0, 0, 0, 0, 0
	}
	p = e / n
	for _, c := range m {
		d := c.Events/c.N - p
		q += c.N * d * d
	}
	return p, n, q, n2, len(m)
}

// Placement is the between-instance variance of the instances' rates (σ²
// of the random-effects model p_i = p + u_i, Var u_i = σ²), pooled over both
// groups, and its degrees of freedom (Σ (instances − 1)). With one
// instance a group there is nothing to estimate it from: df is 0 and the
// variance 0.
//
// E[Q_g] = (k_g − 1)·p(1−p) + σ²·(N_g − Σ n_i²/N_g), so σ̂² is the excess of
// the groups' Q over what the requests' binomial noise explains, over the
// sum of the second factors, and never below 0.
func (c Clustered) Placement() (sigma2 float64, df int) {
	var excess, weight float64
	for _, m := range []map[string]Count{c.Base, c.Can} {
		p, n, q, n2, k := moments(m)
		if k < 2 {
			continue
		}
		excess += q - float64(k-1)*p*(1-p)
		weight += n - n2/n
		df += k - 1
	}
	if df == 0 || weight <= 0 {
		return 0, df
	}
	return math.Max(0, excess/weight), df
}

// PlacementVariance is the part of the variance of canary − baseline that
// the instances' draw makes: σ̂²·Σ n_i²/N² of each group (σ̂²/k with equal
// instances), 0 with one instance a group.
func (c Clustered) PlacementVariance() float64 {
	sigma2, _ := c.Placement()
	return c.placementVariance(sigma2)
}

func (c Clustered) placementVariance(sigma2 float64) float64 {
	var place float64
	for _, m := range []map[string]Count{c.Base, c.Can} {
		_, n, _, n2, _ := moments(m)
		if n > 0 {
			place += sigma2 * n2 / (n * n)
		}
	}
	return place
}

// Standout tests whether canary − baseline stands out of the instances'
// draw in the bad direction (1: canary higher; −1: lower) at level alpha.
// The statistic is the difference of the pooled rates over its standard
// error under the random-effects model: each group's binomial variance
// (smoothed as in Rates.Diff) plus the placement's, σ̂²·Σ n_i²/N²
// (PlacementVariance). Only the placement part is estimated, from df, so
// it is compared with Student's t on the Welch–Satterthwaite degrees of
// freedom df·(v_binomial + v_placement)²/v_placement²: Student's t on df
// when the spread is all of the variance, the normal quantile when there
// is none. As requests grow the binomial part vanishes and the test
// becomes the pooled two-sample t-test of the instances' rates. The draw
// is made once a canary, so the looks see one draw ever better measured,
// not fresh data: no confidence sequence is needed for it. ok is false
// when there is nothing to estimate the spread from (one instance a
// group, or no counts).
func (c Clustered) Standout(alpha float64, bad int) (t, crit float64, df int, ok bool) {
	est, v := c.Rates().Diff()
	sigma2, df := c.Placement()
	if math.IsInf(v, 1) || df == 0 {
		return 0, 0, df, false
	}
	place := c.placementVariance(sigma2)
	t = est * float64(bad) / math.Sqrt(v+place)
	nu := math.Inf(1)
	if place > 0 {
		nu = float64(df) * (v + place) * (v + place) / (place * place)
	}
	if nu > 1e6 {
		crit = NormQuantile(1 - alpha)
	} else {
		crit = distuv.StudentsT{Mu: 0, Sigma: 1, Nu: nu}.Quantile(1 - alpha)
	}
	return t, crit, df, true
}

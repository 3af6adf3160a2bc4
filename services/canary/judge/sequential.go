package judge

import (
	"math"
	"slices"

	"github.com/redblack/redblack/shared/anytime"
	"github.com/redblack/redblack/shared/metrics"
)

// The sequential canary judge. Every metric is a comparison of two rates,
// so one confidence sequence (sequence.go) serves them all:
//
//   - error_rate: errors per request. H0: canary − baseline ≤ tolerance
//     (absolute). The canary fails when the whole confidence sequence is
//     above the tolerance: significantly worse by more than it.
//   - latency_pQ: the share of requests slower than a threshold. Each
//     baseline request is counted against the baseline's own Q-quantile x,
//     each canary request against (1+tolerance)·x, x taken from the
//     baseline's histogram before the sample (predictable, so the counts stay
//     a fair game). If the canary's Q-quantile is within (1+tolerance) of the
//     baseline's, its share past (1+tolerance)·x is at most the baseline's
//     share past x: H0 is "canary share − baseline share ≤ 0". Distribution
//     free, for a median shift as for a tail-only (variance) change (Mann-
//     Whitney misses the latter, kayenta #780).
//
// The error budget 1 − confidence is split over the metrics (Bonferroni;
// see SeqConfig.alpha), so a healthy canary fails at most that often over
// the whole canary.

// SeqMetric is one metric of the sequential judge.
type SeqMetric struct {
	Name string
	// Quantile is 0 for the error rate, 0.5 or 0.99 for latency.
	Quantile  float64
	Direction Direction
	// Tolerance: absolute for the error rate, relative for latency.
	Tolerance float64
	// MinShiftMs: a latency metric fails only if the canary's quantile is
	// also this much worse than the baseline's.
	MinShiftMs float64
	Critical   bool
	Weight     float64
}

// SeqConfig configures the sequential judge.
type SeqConfig struct {
	Metrics []SeqMetric
	// Alpha is the whole canary's error budget: 1 − confidence.
	Alpha float64
	// MinSamples per group (requests) before a metric is judged.
	MinSamples int
	// Unguarded judges without the placement guard, on requests alone:
	// the judge before it, kept for the bench's side-by-side figures.
	Unguarded bool
}

// alpha is one metric's share of the budget: a critical metric (one that
// fails the canary alone) has two shares, any other one; a metric judged in
// both directions splits its share between them. The shares add up to
// Alpha, so a canary no worse than its baseline fails at most Alpha of the
// time whichever metric would fail it.
func (c SeqConfig) alpha(m SeqMetric) float64 {
	share := func(m SeqMetric) float64 {
		if m.Critical {
			return 2
		}
		return 1
	}
	total := 0.0
	for _, o := range c.Metrics {
		total += share(o)
	}
	a := c.Alpha * share(m) / total
	if m.Direction == Either {
		a /= 2
	}
	return a
}

// guarded says whether the placement guard holds a metric's verdicts back:
// the latency metrics only. Placement is what a host's neighbours and
// cache do to latency; an error is a user's failed request, and errors
// from some instances of the new version only (a slot's data its
// migration breaks) are the release's: TestRollingStoreUnderWrites fails
// the one slot v3 breaks, which a guard on errors would excuse as that
// instance's draw.
func (c SeqConfig) guarded(m SeqMetric) bool { return !c.Unguarded && m.Quantile != 0 }

// State is the evidence of one canary: sufficient statistics only, so it
// can be checkpointed at every look and resumed after a restart.
type State struct {
	Bounds       []int64  `json:"bounds,omitempty"`
	Base         []uint64 `json:"base,omitempty"`
	Can          []uint64 `json:"can,omitempty"`
	BaseRequests uint64   `json:"base_requests"`
	BaseErrors   uint64   `json:"base_errors"`
	CanRequests  uint64   `json:"can_requests"`
	CanErrors    uint64   `json:"can_errors"`
	// Up and Down are the latency tests' counts by metric name: requests
	// past the thresholds above (Up) and below (Down).
	Up   map[string]*anytime.Rates `json:"up,omitempty"`
	Down map[string]*anytime.Rates `json:"down,omitempty"`
	// Peak is the strongest evidence against the canary each metric ever
	// reached (1 fails it): how close the canary came to failing.
	Peak map[string]float64 `json:"peak,omitempty"`
	// Inst are the counts by instance, by metric name: errors of requests
	// (the spread reported), and requests past the baseline's quantile x
	// itself (no tolerance: the placement guard's). See Look.
	Inst map[string]*anytime.Clustered `json:"inst,omitempty"`
}

// maxMetrics bounds the metrics a checkpoint may hold counts of.
const maxMetrics = 16

// Add counts one group's sample: requests, errors, and its latency
// histogram, and the same by instance when the sample has them (a sample
// without counts by instance counts as one instance, anytime.Other). A
// histogram whose bounds differ from the first one seen counts for errors
// only.
func (st *State) Add(cfg SeqConfig, baseline bool, s metrics.Sample) {
	requests, errors, bounds, counts := s.Requests, s.Errors(), s.BucketsMicros, s.Latency
	if baseline {
		st.BaseRequests += requests
		st.BaseErrors += errors
	} else {
		st.CanRequests += requests
		st.CanErrors += errors
	}
	parts := s.Instances
	if len(parts) == 0 {
		parts = []metrics.InstanceSample{{ID: anytime.Other, Requests: requests, Errors: errors}}
	}
	if st.Inst == nil {
		st.Inst = map[string]*anytime.Clustered{}
	}
	inst := func(name string) *anytime.Clustered {
		if st.Inst[name] == nil {
			st.Inst[name] = &anytime.Clustered{}
		}
		return st.Inst[name]
	}
	for _, m := range cfg.Metrics {
		if m.Quantile == 0 {
			for _, p := range parts {
				inst(m.Name).Add(baseline, p.ID, float64(p.Errors), float64(p.Requests))
			}
		}
	}
	if len(counts) != len(bounds)+1 || !metrics.ValidBounds(bounds) {
		return
	}
	if st.Bounds == nil {
		st.Bounds = slices.Clone(bounds)
		st.Base = make([]uint64, len(counts))
		st.Can = make([]uint64, len(counts))
	}
	if !slices.Equal(st.Bounds, bounds) {
		return
	}
	if st.Up == nil {
		st.Up = map[string]*anytime.Rates{}
	}
	if st.Down == nil {
		st.Down = map[string]*anytime.Rates{}
	}
	for _, m := range cfg.Metrics {
		if m.Quantile == 0 {
			continue
		}
		x := metrics.HistQuantile(st.Bounds, st.Base, m.Quantile) // from the baseline before this sample
		if x == 0 {
			continue
		}
		if st.Up[m.Name] == nil {
			st.Up[m.Name] = &anytime.Rates{}
		}
		if st.Down[m.Name] == nil {
			st.Down[m.Name] = &anytime.Rates{}
		}
		up, down := st.Up[m.Name], st.Down[m.Name]
		if baseline {
			a, b := metrics.Above(bounds, counts, x)
			up.BaseEvents += a
			up.BaseN += a + b
			down.BaseEvents += b
			down.BaseN += a + b
		} else {
			a, b := metrics.Above(bounds, counts, x*(1+m.Tolerance))
			up.CanEvents += a
			up.CanN += a + b
			_, b2 := metrics.Above(bounds, counts, x/(1+m.Tolerance))
			down.CanEvents += b2
			down.CanN += a + b
		}
		// the guard: each instance's requests past x itself
		if len(s.Instances) == 0 {
			a, b := metrics.Above(bounds, counts, x)
			inst(m.Name).Add(baseline, anytime.Other, a, a+b)
			continue
		}
		for _, p := range s.Instances {
			a, b := metrics.Above(bounds, p.Histogram(len(counts)), x)
			inst(m.Name).Add(baseline, p.ID, a, a+b)
		}
	}
	dst := st.Can
	if baseline {
		dst = st.Base
	}
	for i, c := range counts {
		dst[i] += c
	}
}

// MetricVerdict is the sequential judge's view of one metric at one look.
type MetricVerdict struct {
	Result Result
	// Within: the confidence sequence is wholly on the good side of the
	// tolerance (the metric may pass early).
	Within bool
	// Evidence against the canary at this look (1 fails it) and the most it
	// ever reached.
	Evidence, Peak float64
	// BaseInstances and CanInstances are the instances each group's counts
	// came from; PlacementSD the between-instance standard deviation of
	// the guard's rate (anytime.Clustered.Placement), from PlacementDF
	// degrees of freedom (0: one instance a group, nothing to estimate
	// it from).
	BaseInstances, CanInstances, PlacementDF int
	PlacementSD                              float64
}

// Look judges every metric on the evidence so far, on confidence sequences
// at half of each metric's share of the budget.
func (st *State) Look(cfg SeqConfig) []MetricVerdict {
	if st.Peak == nil {
		st.Peak = map[string]float64{}
	}
	out := make([]MetricVerdict, 0, len(cfg.Metrics))
	for _, m := range cfg.Metrics {
		// half the metric's share for the confidence sequence (any look),
		// half for the test at the end (Final); the guard, a filter on
		// both, at the whole share
		share := cfg.alpha(m)
		alpha := share / 2
		var v MetricVerdict
		var rates anytime.Rates
		var tol float64
		if m.Quantile == 0 {
			rates = anytime.Rates{BaseEvents: float64(st.BaseErrors), BaseN: float64(st.BaseRequests), CanEvents: float64(st.CanErrors), CanN: float64(st.CanRequests)}
			tol = m.Tolerance
			v.Result.BaselineMedian, v.Result.CanaryMedian = safeRate(st.BaseErrors, st.BaseRequests), safeRate(st.CanErrors, st.CanRequests)
		} else if st.Up[m.Name] != nil && st.Down[m.Name] != nil {
			rates = *st.Up[m.Name]
			v.Result.BaselineMedian = metrics.HistQuantile(st.Bounds, st.Base, m.Quantile) / 1000
			v.Result.CanaryMedian = metrics.HistQuantile(st.Bounds, st.Can, m.Quantile) / 1000
		}
		v.Result.BaselineSamples, v.Result.CanarySamples = int(rates.BaseN), int(rates.CanN)
		if rates.BaseN < float64(cfg.MinSamples) || rates.CanN < float64(cfg.MinSamples) {
			v.Result.Classification = NoData
			out = append(out, v)
			continue
		}
		v.Result.Classification = Pass
		est, lo, hi := rates.Interval(alpha)
		_, variance := rates.Diff()
		v.Result.Estimate, v.Result.Low, v.Result.High = est, lo, hi
		shift := v.Result.CanaryMedian - v.Result.BaselineMedian
		// The placement guard (latency: guarded): a verdict also needs the
		// difference to stand out of the instances' draw
		// (anytime.Clustered.Standout) at the metric's level: each group's
		// rate past the baseline's x itself (no tolerance), by instance.
		guardUp, guardDown, place := true, true, 0.0
		guardEvidence := func(int) float64 { return math.Inf(1) }
		if g := st.Inst[m.Name]; g != nil {
			sigma2, df := g.Placement()
			v.BaseInstances, v.CanInstances = g.Instances()
			v.PlacementSD, v.PlacementDF = math.Sqrt(sigma2), df
		}
		if g := st.Inst[m.Name]; g != nil && cfg.guarded(m) {
			place = g.PlacementVariance()
			if t, crit, _, ok := g.Standout(share, 1); ok {
				guardUp, guardDown = t > crit, -t > crit
				guardEvidence = func(bad int) float64 { return math.Max(0, t*float64(bad)/crit) }
			}
		}
		// an early pass must hold whatever the instances' draw: its
		// bounds are widened by the placement's share of the variance
		widened := func(r anytime.Rates) (lo, hi float64) {
			e, vv := r.Diff()
			if math.IsInf(vv, 1) {
				return math.Inf(-1), math.Inf(1)
			}
			rad := anytime.Radius(vv+place, alpha)
			return e - rad, e + rad
		}
		within := true
		if m.Direction != Decrease {
			v.Evidence = math.Min(anytime.Evidence(est, variance, tol, alpha, 1), guardEvidence(1))
			if lo > tol && guardUp && (m.Quantile == 0 || shift >= m.MinShiftMs) {
				v.Result.Classification = High
			}
			_, whi := widened(rates)
			within = within && whi < tol
		}
		if m.Direction != Increase {
			down := rates
			if m.Quantile != 0 {
				down = *st.Down[m.Name]
			}
			dest, dlo, dhi := down.Interval(alpha)
			_, dvar := down.Diff()
			wlo, whi := widened(down)
			if m.Quantile == 0 { // the error rate lower by more than the tolerance
				v.Evidence = math.Max(v.Evidence, math.Min(anytime.Evidence(dest, dvar, -tol, alpha, -1), guardEvidence(-1)))
				if dhi < -tol && guardDown {
					v.Result.Classification = Low
				}
				within = within && wlo > -tol
			} else { // more requests below x/(1+tolerance) than the baseline's below x
				v.Evidence = math.Max(v.Evidence, math.Min(anytime.Evidence(dest, dvar, 0, alpha, 1), guardEvidence(-1)))
				if dlo > 0 && -shift >= m.MinShiftMs && guardDown {
					v.Result.Classification = Low
				}
				within = within && whi < 0
			}
		}
		v.Within = within
		st.Peak[m.Name] = math.Max(st.Peak[m.Name], v.Evidence)
		v.Peak = st.Peak[m.Name]
		out = append(out, v)
	}
	return out
}

// Final is the test at the end of the judgement, taken once, on the other
// half of each metric's share: a one-sided z-test of the same difference
// against the same tolerance, on everything counted. A sequence that may
// stop at any look pays for it in width (about 3.8 standard errors at the
// error rate's share, against 2.8 for one test at a fixed time); the
// canary's duration is fixed in advance, so one test at its end is valid
// and catches what is past the tolerance by 4–5 standard errors (+1 point
// of errors at 600 requests a look) that the sequence alone misses one time
// in ten. The union of the two rejects a canary no worse than the tolerance
// at most the metric's share of the time. The placement guard and
// min_shift hold back its verdicts as they do the sequence's. It returns
// each metric's classification (Pass, High or Low; NoData without enough
// requests) and the z statistic past the tolerance, by name.
func (st *State) Final(cfg SeqConfig) map[string]FinalVerdict {
	out := map[string]FinalVerdict{}
	for _, m := range cfg.Metrics {
		share := cfg.alpha(m)
		crit := anytime.NormQuantile(1 - share/2)
		var rates anytime.Rates
		var tol, shift float64
		if m.Quantile == 0 {
			rates = anytime.Rates{BaseEvents: float64(st.BaseErrors), BaseN: float64(st.BaseRequests), CanEvents: float64(st.CanErrors), CanN: float64(st.CanRequests)}
			tol = m.Tolerance
		} else if st.Up[m.Name] != nil && st.Down[m.Name] != nil {
			rates = *st.Up[m.Name]
			shift = (metrics.HistQuantile(st.Bounds, st.Can, m.Quantile) - metrics.HistQuantile(st.Bounds, st.Base, m.Quantile)) / 1000
		}
		if rates.BaseN < float64(cfg.MinSamples) || rates.CanN < float64(cfg.MinSamples) {
			out[m.Name] = FinalVerdict{Classification: NoData}
			continue
		}
		guardUp, guardDown := true, true
		if g := st.Inst[m.Name]; g != nil && cfg.guarded(m) {
			if t, gcrit, _, ok := g.Standout(share, 1); ok {
				guardUp, guardDown = t > gcrit, -t > gcrit
			}
		}
		f := FinalVerdict{Classification: Pass, Critical: crit}
		if m.Direction != Decrease {
			est, v := rates.Diff()
			f.Z = (est - tol) / math.Sqrt(v)
			if f.Z > crit && guardUp && (m.Quantile == 0 || shift >= m.MinShiftMs) {
				f.Classification = High
			}
		}
		if m.Direction != Increase && f.Classification == Pass {
			down, dtol := rates, -tol
			if m.Quantile != 0 {
				down, dtol = *st.Down[m.Name], 0
			}
			est, v := down.Diff()
			z := (est - dtol) / math.Sqrt(v)
			if m.Quantile == 0 {
				z = (dtol - est) / math.Sqrt(v) // the error rate lower by more than the tolerance
			}
			if z > crit && guardDown && (m.Quantile == 0 || -shift >= m.MinShiftMs) {
				f.Classification, f.Z = Low, z
			}
		}
		out[m.Name] = f
	}
	return out
}

// FinalVerdict is one metric's test at the end: its classification, its
// z statistic past the tolerance and the critical value it was held to.
type FinalVerdict struct {
	Classification Classification `json:"classification"`
	Z              float64        `json:"z"`
	Critical       float64        `json:"critical"`
}

// Valid reports whether a final verdict read back from a checkpoint can be
// used: a known classification and finite figures.
func (f FinalVerdict) Valid() bool {
	switch f.Classification {
	case Pass, High, Low, NoData:
	default:
		return false
	}
	return !math.IsNaN(f.Z) && !math.IsInf(f.Z, 0) && !math.IsNaN(f.Critical) && !math.IsInf(f.Critical, 0)
}

// Valid reports whether a state read back from a checkpoint can be used:
// histograms of one shape and counts that are finite, non-negative and no
// more than their totals.
func (st *State) Valid(maxBuckets int) bool {
	if st.Bounds != nil && (!metrics.ValidBounds(st.Bounds) || len(st.Bounds) > maxBuckets || len(st.Base) != len(st.Bounds)+1 || len(st.Can) != len(st.Bounds)+1) {
		return false
	}
	if st.Bounds == nil && (st.Base != nil || st.Can != nil) {
		return false
	}
	if st.BaseErrors > st.BaseRequests || st.CanErrors > st.CanRequests {
		return false
	}
	for _, m := range []map[string]*anytime.Rates{st.Up, st.Down} {
		for _, r := range m {
			if r == nil || !r.Valid() {
				return false
			}
		}
	}
	for _, p := range st.Peak {
		if math.IsNaN(p) || p < 0 {
			return false
		}
	}
	if len(st.Inst) > maxMetrics || len(st.Up) > maxMetrics || len(st.Down) > maxMetrics || len(st.Peak) > maxMetrics {
		return false
	}
	for _, c := range st.Inst {
		if c == nil || !c.Valid() {
			return false
		}
	}
	return true
}

func safeRate(e, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(e) / float64(n)
}

package phase

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redblack/redblack/services/canary/judge"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
)

// FixedHorizon is the judge before sequential analysis, kept so that
// `redblack bench judge` can replay whole canaries through both in one run:
// a fixed-horizon test (Mann-Whitney + Hodges-Lehmann on latency, Fisher's
// exact test at α 0.15 on errors) of the canary's totals against the
// baseline's, repeated at every look. enough is false while a metric lacks
// samples.
func FixedHorizon(cs spec.Canary, base, can metrics.Totals) (result events.CanaryResult, enough bool) {
	bv, cv := judge.FromHistogram(base.Bounds, base.Latency), judge.FromHistogram(can.Bounds, can.Latency)
	var ms []judge.Metric
	var bad, missing []string
	enough = true
	for _, m := range cs.Metrics {
		cfg := judge.Config{MinSamples: cs.MinSamples, MinShiftMs: float64(m.MinShift.D()) / float64(time.Millisecond)}
		var r judge.Result
		switch m.Name {
		case spec.MetricErrorRate:
			cfg.ErrorTolerance = m.Tolerance
			r = judge.Errors(cfg, int(base.Errors), int(base.Requests), int(can.Errors), int(can.Requests))
		case spec.MetricLatencyP50:
			cfg.LatencyTolerance = m.Tolerance
			r = judge.Latency(cfg, bv, cv, judge.Direction(m.Direction))
		case spec.MetricLatencyP99:
			// the tail: each group's slowest tenth, compared the same way
			cfg.LatencyTolerance = m.Tolerance
			cfg.MinSamples = max(10, cs.MinSamples/10)
			r = judge.Latency(cfg, tail(bv), tail(cv), judge.Direction(m.Direction))
		}
		ms = append(ms, judge.Metric{Result: r, Weight: m.Weight, Critical: m.Critical})
		result.Metrics = append(result.Metrics, events.MetricReport{
			Name: m.Name, Critical: m.Critical, BaselineSamples: r.BaselineSamples, CanarySamples: r.CanarySamples,
			BaselineMedian: r.BaselineMedian, CanaryMedian: r.CanaryMedian, Low: r.Low, High: r.High,
			Classification: string(r.Classification),
		})
		switch r.Classification {
		case judge.NoData:
			enough = false
			missing = append(missing, fmt.Sprintf("%s has %d baseline and %d canary samples of %d needed", m.Name, r.BaselineSamples, r.CanarySamples, cfg.MinSamples))
		case judge.High, judge.Low:
			bad = append(bad, fixedDescribe(m.Name, r))
		}
	}
	result.Score = judge.Score(ms)
	if !enough {
		result.Reason = strings.Join(missing, "; ")
	} else {
		result.Reason = strings.Join(bad, "; ")
	}
	return result, enough
}

// ReplayFixed runs a whole canary through FixedHorizon as the phase ran it
// before: every look at or below the marginal score fails it, the end
// needs the pass score.
func ReplayFixed(cs spec.Canary, looks []Look) (Outcome, int) {
	var base, can metrics.Totals
	n := int(cs.Duration.D() / cs.Interval.D())
	for i, l := range looks {
		base.Add(l.Baseline)
		can.Add(l.Canary)
		r, enough := FixedHorizon(cs, base, can)
		switch {
		case !enough && i+1 >= len(looks):
			return Failed, i + 1
		case !enough:
		case r.Score <= cs.MarginalScore:
			return Failed, i + 1
		case i+1 < n:
		case r.Score >= cs.PassScore:
			return Passed, i + 1
		default:
			return Failed, i + 1
		}
	}
	return Undecided, len(looks)
}

func fixedDescribe(name string, r judge.Result) string {
	if name == spec.MetricErrorRate {
		return fmt.Sprintf("%s %s: canary %.2f%% vs baseline %.2f%% (p=%.3g)", name, r.Classification, 100*r.CanaryMedian, 100*r.BaselineMedian, r.P)
	}
	return fmt.Sprintf("%s %s: canary %.2fms vs baseline %.2fms (ratio %.2f, interval %.2f–%.2f)", name, r.Classification, r.CanaryMedian, r.BaselineMedian, r.Estimate, r.Low, r.High)
}

// tail returns the values at or above the 90th percentile.
func tail(v []float64) []float64 {
	if len(v) == 0 {
		return nil
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)*9/10:]
}

package phase

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redblack/redblack/services/canary/judge"
	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
)

// Judge is one canary's sequential judgement: samples go in as they come
// (Add), every look decides (Look). Its Checkpoint is kept in the release
// record at every look, so a restart resumes with all the evidence, not with
// whatever the METRICS stream still holds. The live phase, the bench's
// replay of whole canaries and the calibration all run this same code.
type Judge struct {
	cs  spec.Canary
	cfg judge.SeqConfig
	// provided are the analysis templates' metrics (providers.go).
	provided analysis.Judge
	// Checkpoint is the evidence so far.
	Checkpoint Checkpoint
}

// Checkpoint is what a canary has seen: the sequential statistics and, per
// router and group, the end of the last window counted (so no sample is
// counted twice across a restart).
type Checkpoint struct {
	State judge.State          `json:"state"`
	Seen  map[string]time.Time `json:"seen,omitempty"`
	Looks int                  `json:"looks"`
	// Providers is the evidence of the analysis templates' metrics, by
	// template/metric.
	Providers map[string]*analysis.State `json:"providers,omitempty"`
	// Final is the router metrics' test at the end (judge.State.Final),
	// once taken: it is taken once a judgement.
	Final map[string]judge.FinalVerdict `json:"final,omitempty"`
}

// MaxCheckpointBytes bounds a checkpoint read back from the record.
const MaxCheckpointBytes = 64 << 10

// DecodeCheckpoint reads a checkpoint kept in a record (untrusted input:
// bounded, strict, and checked for shape).
func DecodeCheckpoint(b []byte) (Checkpoint, error) {
	var c Checkpoint
	if len(b) == 0 {
		return c, nil
	}
	if len(b) > MaxCheckpointBytes {
		return c, fmt.Errorf("canary checkpoint of %d bytes (at most %d)", len(b), MaxCheckpointBytes)
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return c, fmt.Errorf("canary checkpoint: %w", err)
	}
	if !c.State.Valid(metrics.MaxBuckets) || c.Looks < 0 || len(c.Providers) > spec.MaxAnalysis*analysis.MaxMetrics {
		return Checkpoint{}, fmt.Errorf("canary checkpoint: counts or histograms that cannot be real")
	}
	if len(c.Final) > len(spec.DefaultMetrics())*8 {
		return Checkpoint{}, fmt.Errorf("canary checkpoint: %d final verdicts", len(c.Final))
	}
	for _, f := range c.Final {
		if !f.Valid() {
			return Checkpoint{}, fmt.Errorf("canary checkpoint: a final verdict that cannot be real")
		}
	}
	for _, ps := range c.Providers {
		if ps == nil || !ps.Valid() {
			return Checkpoint{}, fmt.Errorf("canary checkpoint: analysis readings that cannot be real")
		}
	}
	return c, nil
}

// NewJudge builds the judge of a canary strategy.
func NewJudge(cs spec.Canary) *Judge {
	cfg := judge.SeqConfig{Alpha: 1 - cs.Confidence, MinSamples: cs.MinSamples}
	for _, m := range cs.Metrics {
		sm := judge.SeqMetric{Name: m.Name, Direction: judge.Direction(m.Direction), Tolerance: m.Tolerance,
			MinShiftMs: float64(m.MinShift.D()) / float64(time.Millisecond), Critical: m.Critical, Weight: m.Weight}
		switch m.Name {
		case spec.MetricLatencyP50:
			sm.Quantile = 0.5
		case spec.MetricLatencyP99:
			sm.Quantile = 0.99
		}
		cfg.Metrics = append(cfg.Metrics, sm)
	}
	return &Judge{cs: cs, cfg: cfg}
}

// Add counts one sample of the baseline (baseline true) or the canary.
func (j *Judge) Add(s metrics.Sample, baseline bool) {
	j.Checkpoint.State.Add(j.cfg, baseline, s)
}

// Outcome of a look.
type Outcome int

// Outcomes.
const (
	Undecided Outcome = iota
	Passed
	Failed
)

// Look judges the evidence so far. end says the canary's duration is over
// (a metric that has not failed by then passes); last says its duration and
// grace are over, or its deadline is near: a metric still without data
// then fails it as inconclusive (unless allow_no_traffic), never a silent
// pass.
func (j *Judge) Look(end, last bool) (events.CanaryResult, Outcome) {
	j.Checkpoint.Looks++
	vs := j.Checkpoint.State.Look(j.cfg)
	// the test at the end, taken once: at the first look at or past the
	// duration where every router metric has its requests
	if end && j.Checkpoint.Final == nil && !slices.ContainsFunc(vs, func(v judge.MetricVerdict) bool { return v.Result.Classification == judge.NoData }) {
		j.Checkpoint.Final = j.Checkpoint.State.Final(j.cfg)
	}
	var result events.CanaryResult
	var ms []judge.Metric
	var bad, missing []string
	enough, within := true, true
	for i, v := range vs {
		m := j.cfg.Metrics[i]
		finalBad := ""
		if f := j.Checkpoint.Final[m.Name]; v.Result.Classification == judge.Pass && (f.Classification == judge.High || f.Classification == judge.Low) {
			v.Result.Classification = f.Classification
			finalBad = fmt.Sprintf(" (the test at the end of the duration: %.2f standard errors past the tolerance, held to %.2f)", f.Z, f.Critical)
		}
		ms = append(ms, judge.Metric{Result: v.Result, Weight: m.Weight, Critical: m.Critical})
		r := v.Result
		result.Metrics = append(result.Metrics, events.MetricReport{
			Name: m.Name, Critical: m.Critical, BaselineSamples: r.BaselineSamples, CanarySamples: r.CanarySamples,
			BaselineMedian: r.BaselineMedian, CanaryMedian: r.CanaryMedian, Estimate: r.Estimate, Low: r.Low, High: r.High,
			Evidence: v.Evidence, Peak: v.Peak, Classification: string(r.Classification),
			BaselineInstances: v.BaseInstances, CanaryInstances: v.CanInstances, PlacementSD: v.PlacementSD, PlacementDF: v.PlacementDF,
		})
		switch r.Classification {
		case judge.NoData:
			enough = false
			missing = append(missing, fmt.Sprintf("%s has %d baseline and %d canary requests of %d needed", m.Name, r.BaselineSamples, r.CanarySamples, j.cfg.MinSamples))
		case judge.High, judge.Low:
			bad = append(bad, describe(m, r)+finalBad+placement(m, v))
		}
		within = within && v.Within
	}
	result.Score = judge.Score(ms)
	result.Looks = j.Checkpoint.Looks
	result.Confidence = j.cs.Confidence
	if enough || len(bad) > 0 {
		result.Reason = strings.Join(bad, "; ")
	} else {
		result.Reason = strings.Join(missing, "; ")
	}
	// the analysis templates' metrics: critical, and never passed without data
	var provBad []string
	pvs := j.provided.Look(j.Checkpoint.Providers)
	for _, v := range pvs {
		result.Metrics = append(result.Metrics, v.Report)
		if v.Bad != "" {
			provBad = append(provBad, v.Bad)
		}
		within = within && (v.Within || v.Report.Optional)
	}
	inconclusive, optional := analysis.Inconclusive(pvs, false), analysis.Inconclusive(pvs, true)
	within = within && len(inconclusive) == 0
	switch {
	case len(bad) > 0 && result.Score <= j.cs.MarginalScore:
		result.Reason = fmt.Sprintf("score %.0f is at or below the marginal score %.0f: %s", result.Score, j.cs.MarginalScore, result.Reason)
		return result, Failed
	case len(provBad) > 0:
		result.Score = 0
		result.Reason = joinNonEmpty("analysis: "+strings.Join(provBad, "; "), result.Reason)
		return result, Failed
	case len(inconclusive) > 0 && last:
		// no data is never a pass: the readings failed to the end and grace
		result.Score = 0
		result.Reason = joinNonEmpty("inconclusive: "+strings.Join(inconclusive, "; "), result.Reason)
		return result, Failed
	case len(inconclusive) > 0 && end:
		return result, Undecided // the grace: a later reading may still succeed
	case !enough && last && j.cs.AllowNoTraffic:
		result.Reason = "passed without the data to judge (allow_no_traffic): " + result.Reason
		return result, Passed
	case !enough && last:
		// no data is never a pass: inconclusive, with the counts
		result.Score = 0
		result.Reason = "inconclusive: too little traffic to judge by the end of the canary and its grace: " + result.Reason
		return result, Failed
	case !enough:
		return result, Undecided
	case j.cs.EarlyPass && within && !end:
		result.Reason = fmt.Sprintf("passed early: every metric is within its tolerance at %g%% confidence", 100*j.cs.Confidence)
		return result, Passed
	case !end:
		return result, Undecided
	case result.Score >= j.cs.PassScore:
		result.Reason = joinNonEmpty(fmt.Sprintf("score %.0f reaches the pass score %.0f", result.Score, j.cs.PassScore), strings.Join(optional, "; "))
		return result, Passed
	default:
		result.Reason = fmt.Sprintf("score %.0f is below the pass score %.0f: %s", result.Score, j.cs.PassScore, result.Reason)
		return result, Failed
	}
}

func describe(m judge.SeqMetric, r judge.Result) string {
	if m.Quantile == 0 {
		return fmt.Sprintf("%s %s: canary %.2f%% vs baseline %.2f%% (difference %+.2f points, confidence sequence %+.2f..%+.2f, tolerance %.2f)",
			m.Name, r.Classification, 100*r.CanaryMedian, 100*r.BaselineMedian, 100*r.Estimate, 100*r.Low, 100*r.High, 100*m.Tolerance)
	}
	return fmt.Sprintf("%s %s: canary %.2fms vs baseline %.2fms (%+.1f points of requests past (1+%.2f)× the baseline's, confidence sequence %+.1f..%+.1f)",
		m.Name, r.Classification, r.CanaryMedian, r.BaselineMedian, 100*r.Estimate, m.Tolerance, 100*r.Low, 100*r.High)
}

// placement says how far the instances' draw was counted in a verdict
// (the latency metrics'; errors are not excused by placement).
func placement(m judge.SeqMetric, v judge.MetricVerdict) string {
	if m.Quantile == 0 {
		return ""
	}
	if v.PlacementDF == 0 {
		return fmt.Sprintf("; %d and %d instances: placement not measured, a difference may be the instance's", v.BaseInstances, v.CanInstances)
	}
	return fmt.Sprintf("; it stands out of the instances' draw (%d and %d instances, spread between them ±%.1f points, %d degrees of freedom)",
		v.BaseInstances, v.CanInstances, 100*v.PlacementSD, v.PlacementDF)
}

// Look is one interval of a canary as the router's samples sum it: each
// group's counts and histogram.
type Look struct {
	Baseline, Canary metrics.Sample
}

// Replay runs a whole canary through the judge, look by look, as the live
// phase does: it returns the outcome and the 1-based look it was decided at
// (the duration's last look if it ran to the end).
func Replay(cs spec.Canary, looks []Look) (events.CanaryResult, Outcome, int) {
	return replay(NewJudge(cs), cs, looks)
}

// ReplayUnguarded is Replay through the judge before the placement guard
// (judge.SeqConfig.Unguarded): the requests alone, as if independent.
func ReplayUnguarded(cs spec.Canary, looks []Look) (events.CanaryResult, Outcome, int) {
	j := NewJudge(cs)
	j.cfg.Unguarded = true
	return replay(j, cs, looks)
}

func replay(j *Judge, cs spec.Canary, looks []Look) (events.CanaryResult, Outcome, int) {
	n := int(cs.Duration.D() / cs.Interval.D())
	var res events.CanaryResult
	for i, l := range looks {
		j.Add(l.Baseline, true)
		j.Add(l.Canary, false)
		r, out := j.Look(i+1 >= n, i+1 >= len(looks))
		res = r
		if out != Undecided {
			return r, out, i + 1
		}
	}
	return res, Undecided, len(looks)
}

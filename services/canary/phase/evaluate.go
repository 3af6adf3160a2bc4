package phase

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redblack/redblack/services/canary/judge"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
)

// verdict ends a canary.
type verdict struct {
	pass   bool
	result events.CanaryResult
}

// judge scores the canary every interval on everything since JudgeFrom.
// An interval at or below the marginal score fails it at once; at the end
// of the duration it passes if the score reaches the pass score. Without
// enough samples it goes on until the deadline and then fails with
// "insufficient data": never a silent pass.
func (p *Phase) judge(ctx context.Context, rec release.Record, svc spec.Service, deadline time.Time) (verdict, error) {
	cs := svc.Strategy.Canary
	var mu sync.Mutex
	var base, can metrics.Totals
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- follow(fctx, p.js, rec, &mu, &base, &can) }()
	t := time.NewTicker(cs.Interval.D())
	defer t.Stop()
	end := rec.JudgeFrom.Add(cs.Duration.D())
	last := deadline.Add(-cs.Interval.D())
	for {
		select {
		case <-ctx.Done():
			return verdict{}, ctx.Err()
		case err := <-errc:
			if err == nil {
				err = fmt.Errorf("canary phase: metrics of %s ended", rec.Service)
			}
			return verdict{}, err
		case <-t.C:
		}
		cur, _, err := p.releases.Get(ctx, rec.ID)
		if err != nil {
			return verdict{}, err
		}
		if cur.Phase != release.PhaseCanary {
			return verdict{}, fmt.Errorf("%w: %s is %s", release.ErrStale, rec.ID, cur.Phase)
		}
		mu.Lock()
		result, enough := Evaluate(cs, base, can)
		mu.Unlock()
		result.Service, result.Canary = rec.Service, rec.Canary
		now := time.Now()
		switch {
		case !enough && now.After(last):
			result.Score = 0
			result.Reason = "insufficient data by the canary deadline: " + result.Reason
			return verdict{false, result}, nil
		case !enough:
			continue
		case result.Score <= cs.MarginalScore:
			result.Reason = fmt.Sprintf("score %.0f is at or below the marginal score %.0f: %s", result.Score, cs.MarginalScore, result.Reason)
			return verdict{false, result}, nil
		case now.Before(end):
			continue
		case result.Score >= cs.PassScore:
			result.Reason = fmt.Sprintf("score %.0f reaches the pass score %.0f", result.Score, cs.PassScore)
			return verdict{true, result}, nil
		default:
			result.Reason = fmt.Sprintf("score %.0f is below the pass score %.0f: %s", result.Score, cs.PassScore, result.Reason)
			return verdict{false, result}, nil
		}
	}
}

// Evaluate judges the canary's totals against the baseline's with the
// spec's metrics. enough is false while a metric lacks samples; Reason then
// says which. For a judged canary, Reason lists the failing metrics.
func Evaluate(cs spec.Canary, base, can metrics.Totals) (result events.CanaryResult, enough bool) {
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
			bad = append(bad, describe(m.Name, r))
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

func describe(name string, r judge.Result) string {
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

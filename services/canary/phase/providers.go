package phase

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/anytime"
	"github.com/redblack/redblack/shared/events"
)

// The metrics of a service's analysis templates, judged beside the
// router's on the same budget (each counts as a critical metric: two
// shares of 1 − confidence, split between the directions for "either"):
//
//   - ratio: each group's events and total counters are read every
//     interval; what each counted since its first reading is compared on the
//     two-sample confidence sequence of the error rate (canary ratio −
//     baseline ratio, tolerance absolute);
//   - value: each look reads both groups once; the canary is worse at a
//     look when its value is past (1 ± tolerance) × the baseline's. A
//     canary no worse than the baseline is worse at most half of the looks
//     in expectation, so the metric fails when the confidence sequence of
//     the share of worse looks is wholly above one half (a sign test,
//     anytime-valid over the looks when the readings of successive looks
//     are independent: the query's range no longer than the interval).
//
// No data is never a pass: a reading that fails (an error, a timeout, no
// series, NaN, not a number) leaves the metric inconclusive until a later
// one succeeds. A canary whose metric is still inconclusive at its end
// waits for its grace, then fails with the reason, unless the metric is
// optional.

// ProviderState is one template metric's evidence, kept in the checkpoint.
type ProviderState struct {
	// First and Last: a ratio's counters (baseline events, baseline total,
	// canary events, canary total) at the first reading and the latest good
	// one.
	First []float64 `json:"first,omitempty"`
	Last  []float64 `json:"last,omitempty"`
	// Looks with both values read, and of those, the looks where the
	// canary was worse than the baseline past the tolerance upwards
	// (Above) and downwards (Below).
	Looks int `json:"looks,omitempty"`
	Above int `json:"above,omitempty"`
	Below int `json:"below,omitempty"`
	// Readings counts the good readings; Inconclusive is why the last one
	// failed ("" if it did not).
	Readings     int    `json:"readings,omitempty"`
	Inconclusive string `json:"inconclusive,omitempty"`
	// Peak is the strongest evidence against the canary reached.
	Peak float64 `json:"peak,omitempty"`
	// Broken is why the metric can no longer be judged (a ratio's counter
	// went down): it stays inconclusive.
	Broken string `json:"broken,omitempty"`
}

func (ps *ProviderState) valid() bool {
	for _, xs := range [][]float64{ps.First, ps.Last} {
		if xs != nil && len(xs) != 4 {
			return false
		}
		for _, x := range xs {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return false
			}
		}
	}
	return ps.Looks >= 0 && ps.Above >= 0 && ps.Below >= 0 && ps.Above+ps.Below <= ps.Looks && ps.Readings >= 0 && len(ps.Inconclusive) <= maxWhy && len(ps.Broken) <= maxWhy &&
		!math.IsNaN(ps.Peak) && ps.Peak >= 0
}

// templateMetric is a template's metric and the name the report gives it.
type templateMetric struct {
	template string
	analysis.Metric
}

func (m templateMetric) key() string { return m.template + "/" + m.Name }

// Analyze adds the templates' metrics to the judge; interval is how often
// they are read, canary the canary group's vars (the report gives the
// queries as they read the canary).
func (j *Judge) Analyze(templates []analysis.Template, interval time.Duration, canary analysis.Vars) {
	j.canaryVars = canary
	for _, t := range templates {
		for _, m := range t.Metrics {
			j.provided = append(j.provided, templateMetric{template: t.Name, Metric: m})
		}
	}
	j.readEvery = interval
	if len(j.provided) > 0 { // the router's metrics give up the template metrics' shares
		shares := j.routerShares()
		j.cfg.Alpha = (1 - j.cs.Confidence) * shares / (shares + 2*float64(len(j.provided)))
	}
}

// routerShares counts the router metrics' shares of the budget: two for a
// critical metric, one for any other (judge.SeqConfig's split).
func (j *Judge) routerShares() float64 {
	var shares float64
	for _, m := range j.cfg.Metrics {
		shares++
		if m.Critical {
			shares++
		}
	}
	return shares
}

// alphaOf is one template metric's share of the budget.
func (j *Judge) alphaOf(m templateMetric) float64 {
	a := (1 - j.cs.Confidence) * 2 / (j.routerShares() + 2*float64(len(j.provided)))
	if m.Direction == "either" {
		a /= 2
	}
	return a
}

// Provided reports whether the judge reads template metrics.
func (j *Judge) Provided() bool { return len(j.provided) > 0 }

// reader reads one expression of a metric for a group.
type reader interface {
	Read(ctx context.Context, m analysis.Metric, expr string, v analysis.Vars) (float64, error)
}

// readings is one look's readings of every template metric: values in the
// order of ProviderState.First, or the error of the first that failed.
type readings map[string]reading

type reading struct {
	values []float64
	err    error
}

// ReadProviders reads every template metric for both groups (outside the
// judge's lock: it takes the network's time); Observe applies them.
func (j *Judge) ReadProviders(ctx context.Context, r reader, base, can analysis.Vars) readings {
	out := readings{}
	for _, m := range j.provided {
		var rd reading
		exprs := []string{m.Query}
		if m.Kind == analysis.KindRatio {
			exprs = []string{m.Events, m.Total}
		}
		for _, v := range []analysis.Vars{base, can} {
			for _, e := range exprs {
				x, err := r.Read(ctx, m.Metric, e, v)
				if err != nil {
					rd.err = fmt.Errorf("%s: %w", analysis.Render(e, v, nil), err)
					break
				}
				rd.values = append(rd.values, x)
			}
			if rd.err != nil {
				break
			}
		}
		out[m.key()] = rd
	}
	return out
}

// Observe applies one look's readings to the evidence.
func (j *Judge) Observe(rs readings) {
	if j.Checkpoint.Providers == nil {
		j.Checkpoint.Providers = map[string]*ProviderState{}
	}
	for _, m := range j.provided {
		rd, ok := rs[m.key()]
		if !ok {
			continue
		}
		ps := j.Checkpoint.Providers[m.key()]
		if ps == nil {
			ps = &ProviderState{}
			j.Checkpoint.Providers[m.key()] = ps
		}
		if ps.Broken != "" {
			continue // a counter went down: the counts cannot be trusted again
		}
		if rd.err == nil && m.Kind == analysis.KindRatio && len(rd.values) == 4 && ps.Last != nil {
			for i, x := range rd.values {
				if x < ps.Last[i] && ps.Broken == "" {
					ps.Broken = clip(fmt.Sprintf("a counter went down (%g after %g): an instance restarted, and what it counted before is lost; the counts since are not judged (a query whose sum survives restarts avoids it)", x, ps.Last[i]))
				}
			}
			if ps.Broken != "" {
				ps.Inconclusive = ps.Broken
				continue
			}
		}
		if rd.err != nil {
			ps.Inconclusive = clip(rd.err.Error())
			continue
		}
		ps.Inconclusive = ""
		ps.Readings++
		switch m.Kind {
		case analysis.KindRatio:
			if ps.First == nil {
				ps.First = rd.values
			}
			ps.Last = rd.values
		case analysis.KindValue:
			b, c := rd.values[0], rd.values[1]
			ps.Looks++
			if c > b*(1+m.Tolerance) {
				ps.Above++
			}
			if c < b*(1-m.Tolerance) {
				ps.Below++
			}
			ps.Last = []float64{0, b, 0, c}
		}
	}
}

// providerVerdict is a template metric's state at a look.
type providerVerdict struct {
	report       events.MetricReport
	bad          string // why it fails the canary ("" if it does not)
	inconclusive string // why it cannot be judged yet
	within       bool   // shown within its tolerance
}

// minLooks is how many looks a value metric needs before its sign test can
// be read; with fewer it is inconclusive.
const minLooks = 3

// lookProviders judges every template metric on the evidence so far.
func (j *Judge) lookProviders() []providerVerdict {
	var out []providerVerdict
	for _, m := range j.provided {
		ps := j.Checkpoint.Providers[m.key()]
		if ps == nil {
			ps = &ProviderState{Inconclusive: "not read yet"}
		}
		expr := analysis.Render(m.Query, j.canaryVars, nil)
		if m.Kind == analysis.KindRatio {
			expr = analysis.Render(m.Events, j.canaryVars, nil) + " / " + analysis.Render(m.Total, j.canaryVars, nil)
		}
		v := providerVerdict{report: events.MetricReport{Name: m.Name, Critical: true, Template: m.template, Provider: m.Provider,
			Query: expr, Kind: m.Kind, Interval: j.readEvery, Readings: ps.Readings, Optional: m.Optional, Classification: "NoData"}}
		alpha := j.alphaOf(m)
		switch {
		case ps.Inconclusive != "":
			v.inconclusive = ps.Inconclusive
		case m.Kind == analysis.KindRatio && len(ps.First) == 4 && len(ps.Last) == 4:
			be, bn, ce, cn := ps.Last[0]-ps.First[0], ps.Last[1]-ps.First[1], ps.Last[2]-ps.First[2], ps.Last[3]-ps.First[3]
			rates := anytime.Rates{BaseEvents: be, BaseN: bn, CanEvents: ce, CanN: cn}
			v.report.BaselineSamples, v.report.CanarySamples = int(bn), int(cn)
			if bn < float64(j.cfg.MinSamples) || cn < float64(j.cfg.MinSamples) {
				v.inconclusive = fmt.Sprintf("%.0f baseline and %.0f canary counted by %s, of %d needed", bn, cn, m.Total, j.cfg.MinSamples)
				break
			}
			if !rates.Valid() {
				v.inconclusive = fmt.Sprintf("the events (%.0f, %.0f) are more than the totals (%.0f, %.0f): events and total must count the same requests", be, ce, bn, cn)
				break
			}
			est, lo, hi := rates.Interval(alpha)
			_, variance := rates.Diff()
			v.report.BaselineMedian, v.report.CanaryMedian = be/bn, ce/cn
			v.report.Estimate, v.report.Low, v.report.High = est, lo, hi
			v.report.Classification = "Pass"
			v.within = true
			if m.Direction != "decrease" {
				v.report.Evidence = anytime.Evidence(est, variance, m.Tolerance, alpha, 1)
				v.within = hi < m.Tolerance
				if lo > m.Tolerance {
					v.report.Classification = "High"
				}
			}
			if m.Direction != "increase" {
				v.report.Evidence = math.Max(v.report.Evidence, anytime.Evidence(est, variance, -m.Tolerance, alpha, -1))
				v.within = v.within && lo > -m.Tolerance
				if hi < -m.Tolerance {
					v.report.Classification = "Low"
				}
			}
			if c := v.report.Classification; c == "High" || c == "Low" {
				v.bad = fmt.Sprintf("%s (template %s, %s: %s) %s: canary %.4g vs baseline %.4g (difference %+.4g, confidence sequence %+.4g..%+.4g, tolerance %g)",
					m.Name, m.template, m.Provider, expr, c, ce/cn, be/bn, est, lo, hi, m.Tolerance)
			}
		case m.Kind == analysis.KindValue && ps.Looks >= minLooks && len(ps.Last) == 4:
			v.report.BaselineSamples, v.report.CanarySamples = ps.Looks, ps.Looks
			v.report.BaselineMedian, v.report.CanaryMedian = ps.Last[1], ps.Last[3]
			v.report.Classification = "Pass"
			n := float64(ps.Looks)
			v.within = true
			for _, side := range []struct {
				dir   string
				worse int
				class string
			}{{"increase", ps.Above, "High"}, {"decrease", ps.Below, "Low"}} {
				if m.Direction != side.dir && m.Direction != "either" {
					continue
				}
				est, lo, hi := anytime.OneRate(float64(side.worse), n, alpha)
				s := (float64(side.worse) + 0.5) / (n + 1)
				v.report.Evidence = math.Max(v.report.Evidence, anytime.Evidence(est, s*(1-s)/n, 0.5, alpha, 1))
				v.report.Estimate, v.report.Low, v.report.High = est, lo, hi
				v.within = v.within && hi < 0.5
				if lo > 0.5 {
					v.report.Classification = side.class
					v.bad = fmt.Sprintf("%s (template %s, %s: %s) %s: the canary's value was past (1%s%g)× the baseline's at %d of %d looks (share %.2f, at least %.2f > 0.5), last canary %.4g vs baseline %.4g",
						m.Name, m.template, m.Provider, expr, side.class, map[string]string{"increase": "+", "decrease": "−"}[side.dir], m.Tolerance, side.worse, ps.Looks, est, lo, ps.Last[3], ps.Last[1])
				}
			}
		default:
			v.inconclusive = fmt.Sprintf("%d readings of %d needed", ps.Readings, minLooks)
		}
		ps.Peak = math.Max(ps.Peak, v.report.Evidence)
		v.report.Peak = ps.Peak
		v.report.Inconclusive = v.inconclusive
		if v.inconclusive != "" {
			v.report.Classification = "NoData"
		}
		out = append(out, v)
	}
	return out
}

// describeInconclusive lists the template metrics that cannot be judged.
func describeInconclusive(vs []providerVerdict, optional bool) []string {
	var out []string
	for _, v := range vs {
		if v.inconclusive != "" && v.report.Optional == optional {
			out = append(out, fmt.Sprintf("%s (template %s, %s: %s) is inconclusive: %s", v.report.Name, v.report.Template, v.report.Provider, v.report.Query, v.inconclusive))
		}
	}
	return out
}

// maxWhy bounds a reason kept in the checkpoint.
const maxWhy = 1024

// clip shortens a reason to maxWhy bytes (at a rune's start).
func clip(s string) string {
	if len(s) <= maxWhy {
		return s
	}
	cut := maxWhy - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// joinNonEmpty joins the non-empty parts with "; ".
func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}

package analysis

import (
	"context"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/redblack/redblack/shared/anytime"
	"github.com/redblack/redblack/shared/events"
)

// The metrics of a service's analysis templates, judged beside the
// router's: by the canary (baseline against canary), by a rolling
// release's verify (the slots not yet replaced against the replaced ones)
// and by the bake (the old group's slice against the new group). Each
// judge gives every template metric its share of its budget (Judge.Alpha).
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
// one succeeds. A judgement whose metric is still inconclusive at its end
// waits for its grace, then fails with the reason, unless the metric is
// optional.

// State is one template metric's evidence, kept in the judge's
// checkpoint.
type State struct {
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

// Valid reports whether a state read back from a checkpoint can be used.
func (ps *State) Valid() bool {
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
	return ps.Looks >= 0 && ps.Above >= 0 && ps.Below >= 0 && ps.Above+ps.Below <= ps.Looks && ps.Readings >= 0 && len(ps.Inconclusive) <= MaxWhy && len(ps.Broken) <= MaxWhy &&
		!math.IsNaN(ps.Peak) && ps.Peak >= 0
}

// named is a template's metric and the template it is of.
type named struct {
	template string
	Metric
}

func (m named) key() string { return m.template + "/" + m.Name }

// Judge judges the metrics of a set of templates. Alpha is each metric's
// share of the judge's budget (halved for direction "either"), MinSamples
// the counts a ratio needs in each group, Every how often the metrics are
// read, and Canary the canary group's variables (the report gives the
// queries as they read the canary).
type Judge struct {
	metrics    []named
	Alpha      float64
	MinSamples int
	Every      time.Duration
	Canary     Vars
}

// Add adds the templates' metrics.
func (j *Judge) Add(templates []Template) {
	for _, t := range templates {
		for _, m := range t.Metrics {
			j.metrics = append(j.metrics, named{template: t.Name, Metric: m})
		}
	}
}

// Len is how many metrics the judge judges.
func (j *Judge) Len() int { return len(j.metrics) }

// alphaOf is one metric's level.
func (j *Judge) alphaOf(m named) float64 {
	if m.Direction == "either" {
		return j.Alpha / 2
	}
	return j.Alpha
}

// reader reads one expression of a metric for a group.
type reader interface {
	Read(ctx context.Context, m Metric, expr string, v Vars) (float64, error)
}

// Readings are one look's readings of every metric, by template/metric:
// values in the order of State.First, or the error of the first that
// failed.
type Readings map[string]Reading

// Reading is one metric's readings at a look.
type Reading struct {
	Values []float64
	Err    error
}

// Read reads every metric for both groups (outside a judge's lock: it
// takes the network's time); Observe applies them.
func (j *Judge) Read(ctx context.Context, r reader, base, can Vars) Readings {
	out := Readings{}
	// one evaluation time for every query of the reading
	if base.At.IsZero() && can.At.IsZero() {
		at := time.Now()
		base.At, can.At = at, at
	}
	for _, m := range j.metrics {
		var rd Reading
		exprs := []string{m.Query}
		if m.Kind == KindRatio {
			exprs = []string{m.Events, m.Total}
		}
		for _, v := range []Vars{base, can} {
			for _, e := range exprs {
				x, err := r.Read(ctx, m.Metric, e, v)
				if err != nil {
					rd.Err = fmt.Errorf("%s: %w", Render(e, v, nil), err)
					break
				}
				rd.Values = append(rd.Values, x)
			}
			if rd.Err != nil {
				break
			}
		}
		out[m.key()] = rd
	}
	return out
}

// Observe applies one look's readings to the evidence in states (by
// template/metric), which it returns (made if nil).
func (j *Judge) Observe(states map[string]*State, rs Readings) map[string]*State {
	if states == nil {
		states = map[string]*State{}
	}
	for _, m := range j.metrics {
		rd, ok := rs[m.key()]
		if !ok {
			continue
		}
		ps := states[m.key()]
		if ps == nil {
			ps = &State{}
			states[m.key()] = ps
		}
		if ps.Broken != "" {
			continue // a counter went down: the counts cannot be trusted again
		}
		if rd.Err == nil && m.Kind == KindRatio && len(rd.Values) == 4 && ps.Last != nil {
			for i, x := range rd.Values {
				if x < ps.Last[i] && ps.Broken == "" {
					ps.Broken = clip(fmt.Sprintf("a counter went down (%g after %g): an instance restarted, and what it counted before is lost; the counts since are not judged (a query whose sum survives restarts avoids it)", x, ps.Last[i]))
				}
			}
			if ps.Broken != "" {
				ps.Inconclusive = ps.Broken
				continue
			}
		}
		if rd.Err != nil {
			ps.Inconclusive = clip(rd.Err.Error())
			continue
		}
		ps.Inconclusive = ""
		ps.Readings++
		switch m.Kind {
		case KindRatio:
			if ps.First == nil {
				ps.First = rd.Values
			}
			ps.Last = rd.Values
		case KindValue:
			b, c := rd.Values[0], rd.Values[1]
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
	return states
}

// Verdict is a template metric's state at a look.
type Verdict struct {
	Report       events.MetricReport
	Bad          string // why it fails the judgement ("" if it does not)
	Inconclusive string // why it cannot be judged yet
	Within       bool   // shown within its tolerance
}

// minLooks is how many looks a value metric needs before its sign test can
// be read; with fewer it is inconclusive.
const minLooks = 3

// Look judges every metric on the evidence in states so far (it keeps
// each one's peak evidence there).
func (j *Judge) Look(states map[string]*State) []Verdict {
	var out []Verdict
	for _, m := range j.metrics {
		ps := states[m.key()]
		if ps == nil {
			ps = &State{Inconclusive: "not read yet"}
		}
		expr := Render(m.Query, j.Canary, nil)
		if m.Kind == KindRatio {
			expr = Render(m.Events, j.Canary, nil) + " / " + Render(m.Total, j.Canary, nil)
		}
		v := Verdict{Report: events.MetricReport{Name: m.Name, Critical: true, Template: m.template, Provider: m.Provider,
			Query: expr, Kind: m.Kind, Interval: j.Every, Readings: ps.Readings, Optional: m.Optional, Classification: "NoData"}}
		alpha := j.alphaOf(m)
		switch {
		case ps.Inconclusive != "":
			v.Inconclusive = ps.Inconclusive
		case m.Kind == KindRatio && len(ps.First) == 4 && len(ps.Last) == 4:
			be, bn, ce, cn := ps.Last[0]-ps.First[0], ps.Last[1]-ps.First[1], ps.Last[2]-ps.First[2], ps.Last[3]-ps.First[3]
			rates := anytime.Rates{BaseEvents: be, BaseN: bn, CanEvents: ce, CanN: cn}
			v.Report.BaselineSamples, v.Report.CanarySamples = int(bn), int(cn)
			if bn < float64(j.MinSamples) || cn < float64(j.MinSamples) {
				v.Inconclusive = fmt.Sprintf("%.0f baseline and %.0f canary counted by %s, of %d needed", bn, cn, m.Total, j.MinSamples)
				break
			}
			if !rates.Valid() {
				v.Inconclusive = fmt.Sprintf("the events (%.0f, %.0f) are more than the totals (%.0f, %.0f): events and total must count the same requests", be, ce, bn, cn)
				break
			}
			est, lo, hi := rates.Interval(alpha)
			_, variance := rates.Diff()
			v.Report.BaselineMedian, v.Report.CanaryMedian = be/bn, ce/cn
			v.Report.Estimate, v.Report.Low, v.Report.High = est, lo, hi
			v.Report.Classification = "Pass"
			v.Within = true
			if m.Direction != "decrease" {
				v.Report.Evidence = anytime.Evidence(est, variance, m.Tolerance, alpha, 1)
				v.Within = hi < m.Tolerance
				if lo > m.Tolerance {
					v.Report.Classification = "High"
				}
			}
			if m.Direction != "increase" {
				v.Report.Evidence = math.Max(v.Report.Evidence, anytime.Evidence(est, variance, -m.Tolerance, alpha, -1))
				v.Within = v.Within && lo > -m.Tolerance
				if hi < -m.Tolerance {
					v.Report.Classification = "Low"
				}
			}
			if c := v.Report.Classification; c == "High" || c == "Low" {
				v.Bad = fmt.Sprintf("%s (template %s, %s: %s) %s: canary %.4g vs baseline %.4g (difference %+.4g, confidence sequence %+.4g..%+.4g, tolerance %g)",
					m.Name, m.template, m.Provider, expr, c, ce/cn, be/bn, est, lo, hi, m.Tolerance)
			}
		case m.Kind == KindValue && ps.Looks >= minLooks && len(ps.Last) == 4:
			v.Report.BaselineSamples, v.Report.CanarySamples = ps.Looks, ps.Looks
			v.Report.BaselineMedian, v.Report.CanaryMedian = ps.Last[1], ps.Last[3]
			v.Report.Classification = "Pass"
			n := float64(ps.Looks)
			v.Within = true
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
				v.Report.Evidence = math.Max(v.Report.Evidence, anytime.Evidence(est, s*(1-s)/n, 0.5, alpha, 1))
				v.Report.Estimate, v.Report.Low, v.Report.High = est, lo, hi
				v.Within = v.Within && hi < 0.5
				if lo > 0.5 {
					v.Report.Classification = side.class
					v.Bad = fmt.Sprintf("%s (template %s, %s: %s) %s: the canary's value was past (1%s%g)× the baseline's at %d of %d looks (share %.2f, at least %.2f > 0.5), last canary %.4g vs baseline %.4g",
						m.Name, m.template, m.Provider, expr, side.class, map[string]string{"increase": "+", "decrease": "−"}[side.dir], m.Tolerance, side.worse, ps.Looks, est, lo, ps.Last[3], ps.Last[1])
				}
			}
		default:
			v.Inconclusive = fmt.Sprintf("%d readings of %d needed", ps.Readings, minLooks)
		}
		ps.Peak = math.Max(ps.Peak, v.Report.Evidence)
		v.Report.Peak = ps.Peak
		v.Report.Inconclusive = v.Inconclusive
		if v.Inconclusive != "" {
			v.Report.Classification = "NoData"
		}
		out = append(out, v)
	}
	return out
}

// Inconclusive lists the metrics (optional or not) that cannot be judged.
func Inconclusive(vs []Verdict, optional bool) []string {
	var out []string
	for _, v := range vs {
		if v.Inconclusive != "" && v.Report.Optional == optional {
			out = append(out, fmt.Sprintf("%s (template %s, %s: %s) is inconclusive: %s", v.Report.Name, v.Report.Template, v.Report.Provider, v.Report.Query, v.Inconclusive))
		}
	}
	return out
}

// MaxWhy bounds a reason kept in a checkpoint.
const MaxWhy = 1024

// clip shortens a reason to MaxWhy bytes (at a rune's start).
func clip(s string) string {
	if len(s) <= MaxWhy {
		return s
	}
	cut := MaxWhy - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

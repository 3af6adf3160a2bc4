package watchdog

import (
	"fmt"
	"math"
	"time"

	"github.com/redblack/redblack/shared/anytime"
	"github.com/redblack/redblack/shared/metrics"
)

// PastBake is the bake as it was judged before the same-time reference:
// the new group after the switch against the old group's traffic in the
// 30 s before it, so anything that changed with time counted against the
// release. Kept so that `redblack bench judge` runs both judges on the
// same draws; nothing live uses it.
type PastBake struct {
	Switched    time.Time
	Reference   metrics.Totals
	All, Window Span
	WindowIndex int
}

// Add counts a sample of the new group: it goes into the window its start
// falls in (a new window resets the window span).
func (b *PastBake) Add(s metrics.Sample, warmup, window time.Duration) {
	if b.WindowIndex == 0 {
		b.WindowIndex = 1
	}
	if k := int(s.Start.Sub(b.Switched)/window) + 1; k > b.WindowIndex {
		b.WindowIndex, b.Window = k, Span{}
	}
	warm := !s.Start.Before(b.Switched.Add(warmup))
	b.All.add(s, warm)
	b.Window.add(s, warm)
}

// CheckPast returns why the bake breaks the rules as they were judged
// against the past ("" if it keeps them).
func (r Rules) CheckPast(b PastBake) string {
	half := r.Alpha / 2
	if why := r.checkPast(b.Reference, b.All, half/3, "since the switch"); why != "" {
		return why
	}
	k := float64(max(b.WindowIndex, 1))
	return r.checkPast(b.Reference, b.Window, half/3*6/(math.Pi*math.Pi*k*k), fmt.Sprintf("in window %d", b.WindowIndex))
}

// check applies the three rules to one span at level a each.
func (r Rules) checkPast(ref metrics.Totals, sp Span, a float64, where string) string {
	if sp.Requests == 0 {
		return ""
	}
	rate, lo, _ := anytime.OneRate(float64(sp.Errors), float64(sp.Requests), a/2)
	if ref.Requests > 0 {
		refUp := anytime.FixedUpper(float64(ref.Errors), float64(ref.Requests), a/2)
		if lo-refUp > r.ErrorTolerance {
			return fmt.Sprintf("error rate %.2f%% (%d of %d requests %s) is above the old group's %.2f%% before the switch by more than %.2f points (at least %.2f%% against at most %.2f%%, %g%% confidence)",
				100*rate, sp.Errors, sp.Requests, where, 100*ref.ErrorRate(), 100*r.ErrorTolerance, 100*lo, 100*refUp, 100*(1-r.Alpha))
		}
	}
	if _, clo, _ := anytime.OneRate(float64(sp.Errors), float64(sp.Requests), a); clo > r.MaxErrorRate {
		return fmt.Sprintf("error rate %.2f%% (%d of %d requests %s) is above the ceiling %.2f%% (at least %.2f%%, %g%% confidence)",
			100*rate, sp.Errors, sp.Requests, where, 100*r.MaxErrorRate, 100*clo, 100*(1-r.Alpha))
	}
	lat := sp.Latency
	var n uint64
	for _, c := range lat.Latency {
		n += c
	}
	if ref.Requests < r.MinRequests || n < r.MinRequests {
		return ""
	}
	refP99 := metrics.HistQuantile(ref.Bounds, ref.Latency, 0.99)
	if refP99 <= 0 || len(lat.Bounds) != len(ref.Bounds) {
		return ""
	}
	var refN uint64
	for _, c := range ref.Latency {
		refN += c
	}
	over, under := metrics.Above(lat.Bounds, lat.Latency, r.MaxLatencyRatio*refP99)
	share, slo, _ := anytime.OneRate(over, over+under, a/2)
	refUp := anytime.FixedUpper(0.01*float64(refN), float64(refN), a/2)
	p99 := metrics.HistQuantile(lat.Bounds, lat.Latency, 0.99)
	if slo > refUp && time.Duration((p99-refP99)*float64(time.Microsecond)) > r.Slack {
		now, was := time.Duration(p99*float64(time.Microsecond)), time.Duration(refP99*float64(time.Microsecond))
		return fmt.Sprintf("p99 latency %s is %.1f× the old group's %s before the switch: %.2f%% of requests %s are slower than %.2f× it (at least %.2f%% against at most %.2f%%, %g%% confidence)",
			now.Round(time.Microsecond), p99/refP99, was.Round(time.Microsecond), 100*share, where, r.MaxLatencyRatio, 100*slo, 100*refUp, 100*(1-r.Alpha))
	}
	return ""
}

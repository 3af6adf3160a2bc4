package cli

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redblack/redblack/shared/events"
)

// shortType drops the io.redblack. prefix: release.canary.passed.
func shortType(typ string) string { return strings.TrimPrefix(typ, events.TypePrefix) }

// describe summarises an event's data in one line.
func describe(ev events.Event) string {
	d, err := ev.TypedData()
	if err != nil {
		return string(ev.Data)
	}
	switch d := d.(type) {
	case *events.Requested:
		return fmt.Sprintf("version %s", d.Version)
	case *events.Accepted:
		s := fmt.Sprintf("version %s → %s", d.Version, d.Group)
		if d.Previous != "" {
			s += " (previous " + d.Previous + ")"
		}
		return s
	case *events.Rejected:
		s := fmt.Sprintf("%s: %s", d.Field, d.Reason)
		return s
	case *events.CanaryResult:
		if strings.HasPrefix(d.Reason, "score") {
			return d.Reason
		}
		return fmt.Sprintf("score %.0f: %s", d.Score, d.Reason)
	case *events.Calibration:
		verdict := "passed"
		if !d.Passed {
			verdict = "FAILED"
		}
		return fmt.Sprintf("A/A %s after %s; closest approach %.0f%% of the failure threshold (%s)", verdict, d.Duration, 100*d.Closest, d.ClosestMetric)
	case *events.CanaryStart:
		return fmt.Sprintf("baseline %s and canary %s take %d%% of traffic each", d.Baseline, d.Canary, d.Weight)
	case *events.Bake:
		return fmt.Sprintf("%s healthy for %s", d.Group, d.Duration)
	case *events.Cluster:
		return fmt.Sprintf("%s: %d instances", d.Group, d.Instances)
	case *events.Traffic:
		switch ev.Type {
		case events.TrafficRestored.Type():
			return fmt.Sprintf("all traffic back on %s", d.Active)
		case events.TrafficSwitched.Type():
			return fmt.Sprintf("active %s (was %s)", d.Active, dash(d.Previous))
		}
		// a change of weights (a canary's share, a change by hand): the
		// weights, not an "active" change that did not happen
		return "weights " + weights(d.Weights)
	case *events.TrafficCommand:
		var s string
		switch {
		case d.Group != "":
			s = "switch to " + d.Group
		case len(d.Weights) > 0:
			s = "set " + setWeights(d.Weights)
		default:
			s = "restore the previous group"
		}
		if d.Reason != "" {
			s += ": " + d.Reason
		}
		return s
	case *events.Rollback:
		return fmt.Sprintf("by %s: %s", d.By, d.Reason)
	case *events.RollbackDone:
		return fmt.Sprintf("restored %s: %s", d.Restored, d.Reason)
	case *events.Completion:
		return fmt.Sprintf("%s serves %s", d.Group, d.Version)
	case *events.ServerGroup:
		s := d.Group
		if d.Capacity > 0 {
			s += fmt.Sprintf(" capacity %d", d.Capacity)
		}
		return strings.TrimSpace(s + " " + d.Reason)
	case *events.ServerGroupCommand:
		return fmt.Sprintf("%s capacity %d %s", d.Group, d.Capacity, d.Version)
	case *events.InstanceCommand:
		return strings.TrimSpace(fmt.Sprintf("%s %s %s", d.Group, d.Instance, d.Reason))
	case *events.Instance:
		return strings.TrimSpace(fmt.Sprintf("%s %s %s %s", d.Instance, d.State, d.Address, d.Reason))
	case *events.Chaos:
		return strings.TrimSpace(fmt.Sprintf("%s %s %s", d.Group, d.Instance, d.Reason))
	case *events.RollingBatch:
		what := strings.Join(d.Slots, ",")
		if len(d.Slots) == 0 {
			what = fmt.Sprintf("%d instance(s)", d.Count)
		}
		s := fmt.Sprintf("batch %d/%d %s", d.Batch, d.Batches, what)
		switch ev.Type {
		case events.RollingBatchStarted.Type():
			return s + fmt.Sprintf(": %s → %s", dash(d.Previous), d.Group)
		case events.RollingBatchHealthy.Type():
			return s + fmt.Sprintf(" up in %s, held the health gate (%s since its start)", d.Up.Round(time.Millisecond), d.Took.Round(time.Millisecond))
		case events.RollingBatchDone.Type():
			if d.Report != nil {
				return s + " verified: " + d.Report.Reason
			}
		}
		return strings.TrimSpace(s + " " + d.Reason)
	}
	return string(ev.Data)
}

// weights lists the groups with traffic, heaviest first, in ‰ of 1000
// ("hello-v002 900, hello-v003-canary 50, …"), or "all 0".
func weights(w map[string]int) string {
	var gs []string
	for g, n := range w {
		if n > 0 {
			gs = append(gs, g)
		}
	}
	sort.Slice(gs, func(i, j int) bool {
		if w[gs[i]] != w[gs[j]] {
			return w[gs[i]] > w[gs[j]]
		}
		return gs[i] < gs[j]
	})
	if len(gs) == 0 {
		return "all 0"
	}
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = fmt.Sprintf("%s %d", g, w[g])
	}
	return strings.Join(parts, ", ")
}

// setWeights lists the weights a command sets, zeros too, by group name.
func setWeights(w map[string]int) string {
	gs := make([]string, 0, len(w))
	for g := range w {
		gs = append(gs, g)
	}
	sort.Strings(gs)
	for i, g := range gs {
		gs[i] = fmt.Sprintf("%s %d", g, w[g])
	}
	return strings.Join(gs, ", ")
}

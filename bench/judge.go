package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/pflag"

	"github.com/redblack/redblack/services/canary/phase"
	"github.com/redblack/redblack/services/watchdog"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
)

// JudgeOptions size the judge bench.
type JudgeOptions struct {
	// Trials per row for the sequential judge and the bake, and for the
	// fixed-horizon judge it replaced (slower: it expands histograms).
	Trials, FixedTrials, BakeTrials int
	Progress                        func(string)
}

// CanaryRow is one scenario of whole canaries through both judges.
type CanaryRow struct {
	Name    string
	PerLook int
	// Healthy rows count false failures (target ≤ 1 − confidence);
	// others detections (target ≥ 95 %).
	Healthy   bool
	New, Old  phase.Figures
	Interval  time.Duration
	Looks     int
	Trials    int
	OldTrials int
}

// BakeRow is one scenario of whole bakes.
type BakeRow struct {
	Name          string
	RatePerSecond int
	Onset         time.Duration
	Healthy       bool
	Figures       watchdog.BakeFigures
}

// DefaultSpec is a service with every default of the strategy.
func DefaultSpec() spec.Service {
	s := spec.Service{Name: "bench", Owner: "bench", Capacity: 1, MaxCapacity: 10}
	s.Default()
	return s
}

// Typical latency of the simulated groups: log-normal, median 20 ms, σ 0.5.
var typical = metrics.Synthetic{MedianMs: 20, Sigma: 0.5}

func with(g metrics.Synthetic, errorRate float64) metrics.Synthetic {
	g.ErrorRate = errorRate
	return g
}

// p99Up is the typical latency with a tail 50 % slower at p99 and the same
// median: a variance-only change (σ + ln 1.5 / z₀.₉₉).
var p99Up = metrics.Synthetic{MedianMs: 20, Sigma: 0.5 + 0.17432}

// JudgeCanaries replays whole canaries with the default strategy: healthy
// ones (the same version: both groups alike) at background error rates 0,
// 0.1, 0.5, 2 and 5 %, and +1 point of errors, +20 % p50 and +50 % p99 over
// a 0.5 % baseline, at 100, 600 and 3,000 requests per group per look.
func JudgeCanaries(o JudgeOptions) []CanaryRow {
	cs := DefaultSpec().Strategy.Canary
	var rows []CanaryRow
	seed := uint64(1)
	run := func(name string, healthy bool, per int, b, c metrics.Synthetic) {
		sc := phase.Scenario{Baseline: b, Canary: c, PerLook: per}
		row := CanaryRow{Name: name, PerLook: per, Healthy: healthy, Interval: cs.Interval.D(), Looks: int(cs.Duration.D() / cs.Interval.D()), Trials: o.Trials, OldTrials: o.FixedTrials}
		row.New = phase.Simulate(cs, sc, o.Trials, seed, false)
		if o.FixedTrials > 0 {
			row.Old = phase.Simulate(cs, sc, o.FixedTrials, seed, true)
		}
		seed++
		if o.Progress != nil {
			o.Progress(fmt.Sprintf("%s, %d per look: sequential %.1f%%, fixed %.1f%%", name, per, 100*row.New.Failed, 100*row.Old.FixedFailed))
		}
		rows = append(rows, row)
	}
	for _, per := range []int{100, 600, 3000} {
		for _, er := range []float64{0, 0.001, 0.005, 0.02, 0.05} {
			run(fmt.Sprintf("healthy, %.1f%% errors in both", 100*er), true, per, with(typical, er), with(typical, er))
		}
	}
	// at the edge of the null: worse by exactly each metric's tolerance
	// (0.1 point of errors, +10 % p50, +15 % p99), which the confidence
	// bounds, not only identical groups
	base := with(typical, 0.005)
	for _, per := range []int{100, 600, 3000} {
		run("at the tolerance: errors +0.1 point (0.5% → 0.6%)", true, per, base, with(typical, 0.006))
		run("at the tolerance: p50 +10%", true, per, base, metrics.Synthetic{ErrorRate: 0.005, MedianMs: 22, Sigma: 0.5})
		run("at the tolerance: p99 +15%, same p50", true, per, base, metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5 + 0.06009})
	}
	for _, per := range []int{100, 600, 3000} {
		run("+1 point of errors (0.5% → 1.5%)", false, per, base, with(typical, 0.015))
		run("+20% p50 latency", false, per, base, metrics.Synthetic{ErrorRate: 0.005, MedianMs: 24, Sigma: 0.5})
		run("+50% p99 latency, same p50", false, per, base, with(p99Up, 0.005))
		run("0 errors in the baseline, 2% in the canary (kayenta #377)", false, per, typical, with(typical, 0.02))
	}
	return rows
}

// JudgeBakes runs whole 5-minute bakes with the default bake strategy,
// one sample a second, through the same-time rules and the past ones on
// the same draws: healthy ones, a neighbour that makes both groups slower
// for a while 10 s after the switch (×2 for 5 s and 20 s, ×1.5 for 20 s),
// and +1 point of errors and +50 % p99 on the new group alone from the
// switch and from 60 s after it, at 200 and 2,000 requests a second.
func JudgeBakes(o JudgeOptions) []BakeRow {
	b := DefaultSpec().Strategy.Bake
	rules := watchdog.RulesOf(b, watchdog.DefaultConfig())
	old := with(typical, 0.005)
	var rows []BakeRow
	seed := uint64(100)
	for _, rate := range []int{200, 2000} {
		run := func(name string, bad metrics.Synthetic, onset time.Duration, nb watchdog.Neighbour) {
			sc := watchdog.BakeScenario{Old: old, New: old, Bad: bad, Onset: onset, Neighbour: nb, RatePerSecond: rate, ReferenceWeight: b.Reference(), Duration: b.Duration.D()}
			row := BakeRow{Name: name, RatePerSecond: rate, Onset: onset, Healthy: bad == (metrics.Synthetic{}), Figures: watchdog.SimulateBake(rules, sc, o.BakeTrials, seed)}
			seed++
			if o.Progress != nil {
				o.Progress(fmt.Sprintf("bake %s at %d/s: rolled back %.1f%% (past rules %.1f%%)", name, rate, 100*row.Figures.RolledBack, 100*row.Figures.PastRolledBack))
			}
			rows = append(rows, row)
		}
		none := watchdog.Neighbour{}
		run("healthy (0.5% errors, as before the switch)", metrics.Synthetic{}, 0, none)
		run("healthy, a neighbour: both ×2 latency for 5 s", metrics.Synthetic{}, 0, watchdog.Neighbour{Factor: 2, At: 10 * time.Second, For: 5 * time.Second})
		run("healthy, a neighbour: both ×2 latency for 20 s", metrics.Synthetic{}, 0, watchdog.Neighbour{Factor: 2, At: 10 * time.Second, For: 20 * time.Second})
		run("healthy, a neighbour: both ×1.5 latency for 20 s", metrics.Synthetic{}, 0, watchdog.Neighbour{Factor: 1.5, At: 10 * time.Second, For: 20 * time.Second})
		for _, onset := range []time.Duration{0, time.Minute} {
			run("+1 point of errors", with(typical, 0.015), onset, none)
			run("+50% p99 latency on the new group alone", with(p99Up, 0.005), onset, none)
		}
	}
	return rows
}

// OrdersRow is one scenario of whole canaries judged with an analysis
// template (orders per request) beside the router's metrics.
type OrdersRow struct {
	Name     string
	PerLook  int
	Healthy  bool
	Figures  phase.TemplateFigures
	Interval time.Duration
}

// JudgeOrders replays whole canaries with the default strategy and the
// orders template (orders per request may not drop by more than 5 points):
// the same orders in both groups, the canary at the tolerance, and 10 and
// 30 % of its orders lost (every request still answered), at 100 and 600
// requests per group per look, with and without the template on the same
// draws.
func JudgeOrders(o JudgeOptions) []OrdersRow {
	cs := DefaultSpec().Strategy.Canary
	var rows []OrdersRow
	seed := uint64(300)
	for _, per := range []int{100, 600} {
		for _, c := range []struct {
			name      string
			base, can float64
			healthy   bool
		}{
			{"healthy: the same orders per request (0.9 in both)", 0.9, 0.9, true},
			{"at the tolerance: 5 points fewer orders", 0.9, 0.85, true},
			{"10% of orders lost (0.9 → 0.81)", 0.9, 0.81, false},
			{"30% of orders lost (0.9 → 0.63), every answer a 200", 0.9, 0.63, false},
		} {
			sc := phase.OrdersScenario{Router: with(typical, 0.005), BaselineOrders: c.base, CanaryOrders: c.can, PerLook: per}
			row := OrdersRow{Name: c.name, PerLook: per, Healthy: c.healthy, Interval: cs.Interval.D(), Figures: phase.SimulateOrders(cs, sc, o.Trials, seed)}
			seed++
			if o.Progress != nil {
				o.Progress(fmt.Sprintf("orders: %s, %d per look: %.1f%% failed (router only %.1f%%)", c.name, per, 100*row.Figures.Failed, 100*row.Figures.RouterOnlyFailed))
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// InstanceRow is one scenario of whole canaries whose groups run several
// instances each, placement setting them apart.
type InstanceRow struct {
	Name      string
	PerLook   int
	Instances int
	Spread    float64
	// Target: "healthy" (≤ 1 − confidence), "detect" (≥ 95 %), or "" (no
	// target: placement as large as the effect, printed for what it
	// costs).
	Target string
	// Figures: the instance-aware judge, and (Unguarded) the judge on
	// requests alone on the same draws; One: the default before it, one
	// instance a group, requests alone.
	Figures phase.Figures
	One     phase.Figures
}

// JudgeInstances replays whole canaries with the default strategy, the
// default canary.capacity (instances a group) and the requests of each
// look spread over them at random: the same version with instances alike
// and ±10 % and ±30 % apart in median latency (placement, drawn once a
// canary), and +20 % p50 and +1 point of errors on every canary instance,
// through the instance-aware judge and, on the same draws, the judge on
// requests alone; and each beside one instance a group, the default
// before.
func JudgeInstances(o JudgeOptions) []InstanceRow {
	cs := DefaultSpec().Strategy.Canary
	k := cs.Capacity
	var rows []InstanceRow
	seed := uint64(500)
	base := with(typical, 0.005)
	slower := metrics.Synthetic{ErrorRate: 0.005, MedianMs: 24, Sigma: 0.5}
	run := func(name, target string, per int, spread float64, can metrics.Synthetic) {
		sc := phase.Scenario{Baseline: base, Canary: can, PerLook: per, Instances: k, Spread: spread}
		row := InstanceRow{Name: name, PerLook: per, Instances: k, Spread: spread, Target: target, Figures: phase.Simulate(cs, sc, o.Trials, seed, false)}
		sc.Instances = 1
		row.One = phase.Simulate(cs, sc, o.Trials, seed, false)
		seed++
		if o.Progress != nil {
			o.Progress(fmt.Sprintf("instances: %s, %d per look: %.1f%% failed (requests alone %.1f%%, one instance a group %.1f%%)", name, per, 100*row.Figures.Failed, 100*row.Figures.Unguarded, 100*row.One.Failed))
		}
		rows = append(rows, row)
	}
	for _, per := range []int{600, 3000} {
		run("healthy, instances ±10% apart", "healthy", per, 0.1, base)
	}
	for _, per := range []int{600, 3000} {
		run("healthy, instances alike", "healthy", per, 0, base)
	}
	run("healthy, instances ±30% apart", "healthy", 600, 0.3, base)
	run("+20% p50 on every canary instance, instances alike", "detect", 600, 0, slower)
	run("+1 point of errors on every canary instance (0.5% → 1.5%)", "detect", 600, 0, with(typical, 0.015))
	for _, per := range []int{600, 3000} {
		run("+20% p50 on every canary instance, instances ±10% apart", "", per, 0.1, slower)
	}
	return rows
}

// printInstances runs and prints the instance scenarios.
func printInstances(env Env, o JudgeOptions) error {
	cs := DefaultSpec().Strategy.Canary
	fmt.Fprintf(env.Out, "\nWhole canaries with %d instances a group (the default canary.capacity), each request served by one at random; placement sets a version's instances apart by a uniform factor on the median, drawn once a canary. %d trials a row.\n", cs.Capacity, o.Trials)
	fmt.Fprintf(env.Out, "Instance-aware: the judge with its placement guard. Requests alone: the same judge without it, on the same draws. One a group: the default before (canary.capacity 1), requests alone.\n\n")
	tw := table(env.Out)
	row(tw, "scenario", "requests/group/look", "instance-aware: failed", "requests alone, same draws", "one instance a group", "target")
	for _, r := range JudgeInstances(o) {
		target := map[string]string{"healthy": fmt.Sprintf("≤ %.3g%%", 100*(1-cs.Confidence)), "detect": "≥ 95%", "": "— (placement as large as the effect)"}[r.Target]
		row(tw, r.Name, r.PerLook, fmt.Sprintf("%.1f%%", 100*r.Figures.Failed), fmt.Sprintf("%.1f%%", 100*r.Figures.Unguarded), fmt.Sprintf("%.1f%%", 100*r.One.Failed), target)
	}
	return tw.Flush()
}

// printOrders runs and prints the template scenarios.
func printOrders(env Env, o JudgeOptions) error {
	fmt.Fprintf(env.Out, "\nWhole canaries with an analysis template (orders per request, a ratio of the service's own counters, tolerance 5 points, direction decrease) beside the router's metrics, %d trials a row; the router's metrics alone on the same draws.\n\n", o.Trials)
	tw := table(env.Out)
	row(tw, "scenario", "requests/group/look", "with the template: failed", "median time to fail", "router's metrics only: failed", "target")
	for _, r := range JudgeOrders(o) {
		target, took := "≥ 95%", "-"
		switch {
		case r.Healthy:
			target = "≤ 1%"
		case r.PerLook < 600: // 1,000 requests a group in all: too few to see a few points
			target = "-"
		}
		if r.Figures.MedianLooks > 0 {
			took = (time.Duration(r.Figures.MedianLooks) * r.Interval).String()
		}
		row(tw, r.Name, r.PerLook, fmt.Sprintf("%.1f%%", 100*r.Figures.Failed), took, fmt.Sprintf("%.1f%%", 100*r.Figures.RouterOnlyFailed), target)
	}
	return tw.Flush()
}

// judgeTable is one table of `bench judge`.
type judgeTable struct {
	name  string
	print func(Env, JudgeOptions) error
}

// judgeTables are bench judge's tables, in the order printed.
var judgeTables = []judgeTable{{"canaries", printCanaries}, {"instances", printInstances}, {"orders", printOrders}, {"bakes", printBakes}}

// judgeBench is `bench judge`.
func judgeBench() Entry {
	var o JudgeOptions
	var only []string
	return Entry{
		Name:  "judge",
		Short: "whole canaries and bakes, seeded: healthy failure rates and detection, the sequential judge beside the fixed-horizon one",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&o.Trials, "trials", 1000, "whole canaries per row (sequential judge)")
			f.IntVar(&o.FixedTrials, "fixed-trials", 300, "whole canaries per row through the fixed-horizon judge (0: skip it)")
			f.IntVar(&o.BakeTrials, "bake-trials", 1000, "whole bakes per row")
			f.StringSliceVar(&only, "only", nil, "print only these tables: canaries, instances, orders, bakes (default: all)")
		},
		Run: func(_ context.Context, env Env, _ []string) error {
			o.Progress = env.Progress
			for _, name := range only {
				if !slices.ContainsFunc(judgeTables, func(t judgeTable) bool { return t.name == name }) {
					return fmt.Errorf("--only %s: want canaries, instances, orders or bakes", name)
				}
			}
			for _, t := range judgeTables {
				if len(only) > 0 && !slices.Contains(only, t.name) {
					continue
				}
				if err := t.print(env, o); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// printCanaries runs and prints the whole canaries.
func printCanaries(env Env, o JudgeOptions) error {
	cs := DefaultSpec().Strategy
	fmt.Fprintf(env.Out, "Whole canaries with the default strategy (%s, a look every %s, confidence %g), log-normal latency (median 20 ms, σ 0.5) on the router's buckets.\n",
		cs.Canary.Duration.D(), cs.Canary.Interval.D(), cs.Canary.Confidence)
	fmt.Fprintf(env.Out, "Sequential judge: %d trials a row; fixed-horizon judge (the one it replaced): %d trials a row.\n\n", o.Trials, o.FixedTrials)
	tw := table(env.Out)
	row(tw, "scenario", "requests/group/look", "sequential: failed", "median time to fail", "fixed horizon: failed", "median time to fail", "target")
	for _, r := range JudgeCanaries(o) {
		target := fmt.Sprintf("≤ %.3g%%", 100*(1-cs.Canary.Confidence))
		if !r.Healthy {
			target = "≥ 95%"
		}
		at := func(looks float64) string {
			if looks == 0 {
				return "-"
			}
			return (time.Duration(looks) * r.Interval).String()
		}
		old, oldAt := "-", "-"
		if r.OldTrials > 0 {
			old, oldAt = fmt.Sprintf("%.1f%%", 100*r.Old.FixedFailed), at(r.Old.FixedMedianLooks)
		}
		row(tw, r.Name, r.PerLook, fmt.Sprintf("%.1f%%", 100*r.New.Failed), at(r.New.MedianLooks), old, oldAt, target)
	}
	return tw.Flush()
}

// printBakes runs and prints the whole bakes.
func printBakes(env Env, o JudgeOptions) error {
	cs := DefaultSpec().Strategy
	fmt.Fprintf(env.Out, "\nWhole bakes with the default bake strategy (%s, confidence %g, error tolerance %g, ceiling %g, p99 ratio %g), one sample a second, %d trials a row.\n",
		cs.Bake.Duration.D(), cs.Bake.Confidence, cs.Bake.ErrorTolerance, cs.Bake.MaxErrorRate, cs.Bake.MaxLatencyRatio, o.BakeTrials)
	fmt.Fprintf(env.Out, "Same time: the new group against the old group's %d%% slice over the same seconds (today's rules). Past: against the old group's %s before the switch (the rules they replaced), on the same draws.\n\n",
		cs.Bake.Reference(), watchdog.PastReference)
	tw := table(env.Out)
	row(tw, "bake", "requests/s", "degrades after", "same time: rolled back", "median time to detect", "past: rolled back", "median time to detect", "target")
	for _, r := range JudgeBakes(o) {
		onset, target, took, pastTook := r.Onset.String(), "≥ 95%", r.Figures.MedianDetect.String(), r.Figures.PastMedianDetect.String()
		switch {
		case r.Healthy:
			onset, target, took, pastTook = "-", fmt.Sprintf("≤ %.3g%%", 100*(1-cs.Bake.Confidence)), "-", "-"
		case r.Onset > 0: // not a target of the same-time design: a late onset on a small slice
			target = "≥ past"
		}
		row(tw, r.Name, r.RatePerSecond, onset, fmt.Sprintf("%.1f%%", 100*r.Figures.RolledBack), took, fmt.Sprintf("%.1f%%", 100*r.Figures.PastRolledBack), pastTook, target)
	}
	return tw.Flush()
}

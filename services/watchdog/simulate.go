package watchdog

import (
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
)

// BakeScenario is a simulated bake, one sample a second of RatePerSecond
// requests: the old group (before the switch, and its slice of
// ReferenceWeight percent after it) and the new group, the new group
// degrading to Bad from Onset on (never if Bad is zero), and both groups'
// latency multiplied by Neighbour.Factor for Neighbour.For from
// Neighbour.At after the switch (a neighbour's load: the same for both).
type BakeScenario struct {
	Old, New, Bad   metrics.Synthetic
	Onset           time.Duration
	Neighbour       Neighbour
	RatePerSecond   int
	ReferenceWeight int
	Duration        time.Duration
}

// Neighbour is a change with time that touches every group alike.
type Neighbour struct {
	Factor  float64
	At, For time.Duration
}

// PastReference is the span before the switch the past judge took the old
// group's reference from.
const PastReference = 30 * time.Second

// BakeFigures are a bake scenario's outcomes over seeded trials, through
// the live rules (same-time reference) and the past ones, on the same
// draws.
type BakeFigures struct {
	Trials int
	// RolledBack is the share of bakes rolled back; MedianDetect the median
	// time from the onset (or the switch) to the rollback.
	RolledBack   float64
	MedianDetect time.Duration
	// PastRolledBack and PastMedianDetect: the same through the rules that
	// compared with the 30 s before the switch.
	PastRolledBack   float64
	PastMedianDetect time.Duration
}

// SimulateBake runs trials bakes of the scenario through the watchdog's
// rules, sample by sample as the watch does, and through the past rules:
// the same draws of the new group's share and of the old group, plus the
// rest of the new group's traffic that the slice takes from the new group
// (the past judge sent it all to the new group). The figures depend only on
// seed.
func SimulateBake(rules Rules, sc BakeScenario, trials int, seed uint64) BakeFigures {
	type outcome struct {
		failed, pastFailed bool
		at, pastAt         time.Duration
	}
	out := make([]outcome, trials)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gens := map[metrics.Synthetic]metrics.Generator{}
			gen := func(g metrics.Synthetic) metrics.Generator {
				if _, ok := gens[g]; !ok {
					gens[g] = g.Generator()
				}
				return gens[g]
			}
			refN := sc.RatePerSecond * sc.ReferenceWeight / 100
			for i := w; i < trials; i += 2 {
				r := rand.New(rand.NewPCG(seed, uint64(i)))
				t0 := time.Unix(1_700_000_000, 0).UTC()
				b, past := Bake{Switched: t0}, PastBake{Switched: t0}
				for at := t0.Add(-PastReference); at.Before(t0); at = at.Add(time.Second) {
					past.Reference.Add(gen(sc.Old).Sample(r, sc.RatePerSecond, "sim", "old", at, at.Add(time.Second)))
				}
				o := &out[i]
				for at := t0; at.Before(t0.Add(sc.Duration)) && !(o.failed && o.pastFailed); at = at.Add(time.Second) {
					since := at.Sub(t0)
					old, neu := sc.Old, sc.New
					if sc.Bad != (metrics.Synthetic{}) && since >= sc.Onset {
						neu = sc.Bad
					}
					if sc.Neighbour.Factor > 0 && since >= sc.Neighbour.At && since < sc.Neighbour.At+sc.Neighbour.For {
						old.MedianMs *= sc.Neighbour.Factor
						neu.MedianMs *= sc.Neighbour.Factor
					}
					end := at.Add(time.Second)
					share := gen(neu).Sample(r, sc.RatePerSecond-refN, "sim", "new", at, end)
					slice := gen(old).Sample(r, refN, "sim", "old", at, end)
					rest := gen(neu).Sample(r, refN, "sim", "new", at, end)
					if !o.failed {
						rules.Add(&b, slice, true)
						rules.Add(&b, share, false)
						if rules.Check(b, true) != "" {
							o.failed, o.at = true, end.Sub(t0.Add(sc.Onset))
						}
					}
					if !o.pastFailed {
						past.Add(share, rules.Warmup, rules.Window)
						past.Add(rest, rules.Warmup, rules.Window)
						if rules.CheckPast(past) != "" {
							o.pastFailed, o.pastAt = true, end.Sub(t0.Add(sc.Onset))
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	f := BakeFigures{Trials: trials}
	var ds, pds []time.Duration
	for _, o := range out {
		if o.failed {
			ds = append(ds, o.at)
		}
		if o.pastFailed {
			pds = append(pds, o.pastAt)
		}
	}
	f.RolledBack, f.MedianDetect = float64(len(ds))/float64(max(trials, 1)), median(ds)
	f.PastRolledBack, f.PastMedianDetect = float64(len(pds))/float64(max(trials, 1)), median(pds)
	return f
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// RulesOf are the rules of a bake strategy with the watchdog's config.
func RulesOf(b spec.Bake, cfg Config) Rules {
	return Rules{MaxErrorRate: b.MaxErrorRate, ErrorTolerance: b.ErrorTolerance, MaxLatencyRatio: b.MaxLatencyRatio, MaxLatency: b.MaxLatency.D(),
		Alpha: 1 - b.Confidence, MinRequests: cfg.MinRequests, Slack: cfg.LatencySlack, Warmup: cfg.Warmup, Window: cfg.Window}
}

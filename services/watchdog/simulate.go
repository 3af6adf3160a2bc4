package watchdog

import (
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/redblack/redblack/shared/metrics"
)

// BakeScenario is a simulated bake: the old group before the switch and
// the new group after it, RatePerSecond requests a second in one sample a
// second, the new group degrading to Bad from Onset on (never if Bad is
// zero).
type BakeScenario struct {
	Old, New, Bad metrics.Synthetic
	Onset         time.Duration
	RatePerSecond int
	Reference     time.Duration
	Duration      time.Duration
}

// BakeFigures are a bake scenario's outcomes over seeded trials.
type BakeFigures struct {
	Trials int
	// RolledBack is the share of bakes rolled back; MedianDetect the median
	// time from the onset (or the switch) to the rollback.
	RolledBack   float64
	MedianDetect time.Duration
}

// SimulateBake runs trials bakes of the scenario through the watchdog's
// rules, sample by sample as the watch does. The figures depend only on
// seed.
func SimulateBake(rules Rules, cfg Config, sc BakeScenario, trials int, seed uint64) BakeFigures {
	detect := make([]time.Duration, trials)
	failed := make([]bool, trials)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			old, neu, bad := sc.Old.Generator(), sc.New.Generator(), sc.Bad.Generator()
			for i := w; i < trials; i += 2 {
				r := rand.New(rand.NewPCG(seed, uint64(i)))
				t0 := time.Unix(1_700_000_000, 0).UTC()
				b := Bake{Switched: t0}
				for at := t0.Add(-sc.Reference); at.Before(t0); at = at.Add(time.Second) {
					b.Reference.Add(old.Sample(r, sc.RatePerSecond, "sim", "old", at, at.Add(time.Second)))
				}
				for at := t0; at.Before(t0.Add(sc.Duration)); at = at.Add(time.Second) {
					g := neu
					if sc.Bad != (metrics.Synthetic{}) && !at.Before(t0.Add(sc.Onset)) {
						g = bad
					}
					b.Add(g.Sample(r, sc.RatePerSecond, "sim", "new", at, at.Add(time.Second)), cfg.Warmup, cfg.Window)
					if rules.Check(b) != "" {
						failed[i], detect[i] = true, at.Add(time.Second).Sub(t0.Add(sc.Onset))
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	f := BakeFigures{Trials: trials}
	var ds []time.Duration
	for i := range trials {
		if failed[i] {
			f.RolledBack++
			ds = append(ds, detect[i])
		}
	}
	f.RolledBack /= float64(trials)
	if len(ds) > 0 {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		f.MedianDetect = ds[len(ds)/2]
	}
	return f
}

// RulesFor are the rules of a bake strategy with the watchdog's config.
func RulesFor(confidence, maxErrorRate, errorTolerance, maxLatencyRatio float64, cfg Config) Rules {
	return Rules{MaxErrorRate: maxErrorRate, ErrorTolerance: errorTolerance, MaxLatencyRatio: maxLatencyRatio,
		Alpha: 1 - confidence, MinRequests: cfg.MinRequests, Slack: cfg.LatencySlack}
}

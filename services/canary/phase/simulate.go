package phase

import (
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
)

// Scenario is a simulated canary: baseline and canary behaviour and the
// requests each group gets per look.
type Scenario struct {
	Baseline, Canary metrics.Synthetic
	PerLook          int
}

// Looks draws a whole canary's looks for a strategy.
func (sc Scenario) Looks(r *rand.Rand, cs spec.Canary) []Look {
	n := int(cs.Duration.D() / cs.Interval.D())
	b, c := sc.Baseline.Generator(), sc.Canary.Generator()
	at := time.Unix(1_700_000_000, 0).UTC()
	out := make([]Look, n)
	for i := range out {
		end := at.Add(cs.Interval.D())
		out[i] = Look{Baseline: b.Sample(r, sc.PerLook, "sim", "b", at, end), Canary: c.Sample(r, sc.PerLook, "sim", "c", at, end)}
		at = at.Add(cs.Interval.D())
	}
	return out
}

// Figures are a scenario's outcomes over seeded trials of whole canaries.
type Figures struct {
	Trials int
	// Failed is the share of canaries failed (of the sequential judge and
	// of the fixed-horizon one it replaced).
	Failed, FixedFailed float64
	// MedianLooks is the median look at which a failed canary failed (0:
	// none failed), as a share of the canary's duration when multiplied by
	// the interval.
	MedianLooks, FixedMedianLooks float64
}

// Simulate replays trials whole canaries of the scenario through the
// sequential judge and, if fixed, through the fixed-horizon one, on the
// same draws. Trials run on all cores; the figures depend only on seed.
func Simulate(cs spec.Canary, sc Scenario, trials int, seed uint64, fixed bool) Figures {
	type res struct {
		fail, ffail   bool
		looks, flooks int
	}
	out := make([]res, trials)
	var wg sync.WaitGroup
	workers := 2
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < trials; i += workers {
				r := rand.New(rand.NewPCG(seed, uint64(i)))
				looks := sc.Looks(r, cs)
				_, o, k := Replay(cs, looks)
				out[i].fail, out[i].looks = o == Failed, k
				if fixed {
					fo, fk := ReplayFixed(cs, looks)
					out[i].ffail, out[i].flooks = fo == Failed, fk
				}
			}
		}()
	}
	wg.Wait()
	f := Figures{Trials: trials}
	var ls, fls []float64
	for _, o := range out {
		if o.fail {
			f.Failed++
			ls = append(ls, float64(o.looks))
		}
		if o.ffail {
			f.FixedFailed++
			fls = append(fls, float64(o.flooks))
		}
	}
	f.Failed /= float64(trials)
	f.FixedFailed /= float64(trials)
	f.MedianLooks, f.FixedMedianLooks = medianOf(ls), medianOf(fls)
	return f
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

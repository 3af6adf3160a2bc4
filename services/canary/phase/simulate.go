package phase

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
)

// Scenario is a simulated canary: baseline and canary behaviour and the
// requests each group gets per look. With Instances, each group runs that
// many instances, each request served by one at random; Spread sets them
// apart as placement does: each instance's median is the group's times
// 1+u, u uniform in ±Spread, drawn once a canary (the same version on
// another host). The samples then carry their counts by instance.
type Scenario struct {
	Baseline, Canary metrics.Synthetic
	PerLook          int
	Instances        int
	Spread           float64
}

// Looks draws a whole canary's looks for a strategy.
func (sc Scenario) Looks(r *rand.Rand, cs spec.Canary) []Look {
	n := int(cs.Duration.D() / cs.Interval.D())
	at := time.Unix(1_700_000_000, 0).UTC()
	out := make([]Look, n)
	if sc.Instances == 0 {
		b, c := sc.Baseline.Generator(), sc.Canary.Generator()
		for i := range out {
			end := at.Add(cs.Interval.D())
			out[i] = Look{Baseline: b.Sample(r, sc.PerLook, "sim", "b", at, end), Canary: c.Sample(r, sc.PerLook, "sim", "c", at, end)}
			at = at.Add(cs.Interval.D())
		}
		return out
	}
	placed := func(g metrics.Synthetic) []metrics.Generator {
		gens := make([]metrics.Generator, sc.Instances)
		for i := range gens {
			p := g
			p.MedianMs *= 1 + sc.Spread*(2*r.Float64()-1)
			gens[i] = p.Generator()
		}
		return gens
	}
	b, c := placed(sc.Baseline), placed(sc.Canary)
	for i := range out {
		end := at.Add(cs.Interval.D())
		out[i] = Look{Baseline: instanceSample(r, b, sc.PerLook, "b", at, end), Canary: instanceSample(r, c, sc.PerLook, "c", at, end)}
		at = at.Add(cs.Interval.D())
	}
	return out
}

// instanceSample draws n requests over a group's instances, each to one
// at random, as one router sample with its counts by instance.
func instanceSample(r *rand.Rand, gens []metrics.Generator, n int, group string, start, end time.Time) metrics.Sample {
	share := make([]int, len(gens))
	for range n {
		share[r.IntN(len(gens))]++
	}
	var out metrics.Sample
	for i, g := range gens {
		s := g.Sample(r, share[i], "sim", group, start, end)
		if i == 0 {
			out = s
			out.Latency = slices.Clone(s.Latency)
		} else {
			out.Requests += s.Requests
			out.Status2xx += s.Status2xx
			out.Status5xx += s.Status5xx
			for j, k := range s.Latency {
				out.Latency[j] += k
			}
		}
		if s.Requests > 0 {
			out.Instances = append(out.Instances, metrics.InstanceSample{ID: fmt.Sprintf("%s-%d", group, i), Requests: s.Requests, Errors: s.Errors(), Latency: metrics.Sparse(s.Latency)})
		}
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
	// Unguarded is the share failed by the judge without the placement
	// guard, on the same draws (scenarios with Instances only).
	Unguarded float64
}

// Simulate replays trials whole canaries of the scenario through the
// sequential judge and, if fixed, through the fixed-horizon one, on the
// same draws. Trials run on all cores; the figures depend only on seed.
func Simulate(cs spec.Canary, sc Scenario, trials int, seed uint64, fixed bool) Figures {
	type res struct {
		fail, ffail, ufail bool
		looks, flooks      int
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
				if sc.Instances > 0 {
					_, uo, _ := ReplayUnguarded(cs, looks)
					out[i].ufail = uo == Failed
				}
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
		if o.ufail {
			f.Unguarded++
		}
	}
	f.Unguarded /= float64(trials)
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

// OrdersScenario is a simulated canary of a service whose analysis
// template judges orders per request (a ratio of its own counters): both
// groups' router metrics alike, each request placing an order with
// probability BaselineOrders and CanaryOrders.
type OrdersScenario struct {
	Router                       metrics.Synthetic
	BaselineOrders, CanaryOrders float64
	PerLook                      int
}

// OrdersTemplate is the template the orders scenarios judge with: orders
// per request may not drop by more than 5 points.
var OrdersTemplate = analysis.Template{Name: "orders", Owner: "sim", Metrics: []analysis.Metric{{
	Name: "orders_per_request", Provider: analysis.ProviderPrometheus, Kind: analysis.KindRatio,
	Events: "orders", Total: "requests", Direction: "decrease", Tolerance: 0.05, Timeout: spec.Duration(time.Second),
}}}

// simCounters are the groups' cumulative counters the simulated provider
// reads.
type simCounters struct{ orders, requests map[string]float64 }

func (c simCounters) Read(_ context.Context, _ analysis.Metric, expr string, v analysis.Vars) (float64, error) {
	if expr == "orders" {
		return c.orders[v.Group], nil
	}
	return c.requests[v.Group], nil
}

// TemplateFigures are an orders scenario's outcomes: the share of canaries
// failed with the template, and by the router's metrics alone, on the same
// draws.
type TemplateFigures struct {
	Trials                   int
	Failed, RouterOnlyFailed float64
	MedianLooks              float64
}

// SimulateOrders replays trials whole canaries of the scenario through the
// judge with OrdersTemplate and through the judge without it.
func SimulateOrders(cs spec.Canary, sc OrdersScenario, trials int, seed uint64) TemplateFigures {
	type res struct {
		fail, routerFail bool
		looks            int
	}
	out := make([]res, trials)
	n := int(cs.Duration.D() / cs.Interval.D())
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := sc.Router.Generator()
			base, can := analysis.Vars{Group: "b"}, analysis.Vars{Group: "c"}
			for i := w; i < trials; i += 2 {
				r := rand.New(rand.NewPCG(seed, uint64(i)))
				j, router := NewJudge(cs), NewJudge(cs)
				j.Analyze([]analysis.Template{OrdersTemplate}, cs.Interval.D(), can)
				ctr := simCounters{orders: map[string]float64{}, requests: map[string]float64{}}
				done, routerDone := false, false
				for k := range n {
					for _, gp := range []struct {
						group string
						p     float64
					}{{"b", sc.BaselineOrders}, {"c", sc.CanaryOrders}} {
						for range sc.PerLook {
							ctr.requests[gp.group]++
							if r.Float64() < gp.p {
								ctr.orders[gp.group]++
							}
						}
					}
					bs, cs2 := g.Sample(r, sc.PerLook, "sim", "b", time.Time{}, time.Time{}), g.Sample(r, sc.PerLook, "sim", "c", time.Time{}, time.Time{})
					last := k+1 == n
					if !done {
						j.Add(bs, true)
						j.Add(cs2, false)
						j.Observe(j.ReadProviders(context.Background(), ctr, base, can))
						if _, o := j.Look(last, last); o != Undecided {
							done, out[i].fail, out[i].looks = true, o == Failed, k+1
						}
					}
					if !routerDone {
						router.Add(bs, true)
						router.Add(cs2, false)
						if _, o := router.Look(last, last); o != Undecided {
							routerDone, out[i].routerFail = true, o == Failed
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	f := TemplateFigures{Trials: trials}
	var ls []float64
	for _, o := range out {
		if o.fail {
			f.Failed++
			ls = append(ls, float64(o.looks))
		}
		if o.routerFail {
			f.RouterOnlyFailed++
		}
	}
	f.Failed /= float64(max(trials, 1))
	f.RouterOnlyFailed /= float64(max(trials, 1))
	f.MedianLooks = medianOf(ls)
	return f
}

package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/spec"
)

// TiersRate is the demo's steady load on edge, requests per second: paced,
// so that the rate the store sees is the load's and not the machine's.
const TiersRate = 200

// TiersMaxDeviation bounds the store's rate, in any second of a release,
// against its mean in the 10 s before it: the seed's "downstream services
// see the same traffic volume", measured (a bad release's failed requests
// are answered by the old group, so they reach store too).
const TiersMaxDeviation = 0.05

// tier is one layer of the tiers demo.
type tier struct {
	name       string
	downstream []string
}

// demoTiers is `redblack demo --tiers`: edge behind the router, api called
// by edge through the discovery client, store (examples/store, stateful,
// released by rolling) called by api, under a paced load on edge; api v2
// (healthy), api v3 (its bake fails) and edge v2 (healthy) are released,
// and the store's rate is measured in 1 s buckets around each. Then
// writers put keys through api into the store's slots while the store
// rolls to v2, and while a v3 whose slot store-1 refuses writes is rolled
// back; every acknowledged key is read back.
func (a *app) demoTiers(keep bool) error {
	res, err := a.runTiers(keep)
	if err != nil {
		return err
	}
	rows, rolls, checks, start := res.rows, res.rolls, res.checks, res.start
	fmt.Fprintln(a.out)
	tw := newTable(a.out)
	fmt.Fprintln(tw, "RELEASE\tOUTCOME\tSTORE REQ/S BEFORE\tWORST SECOND\tSERVED\tFAILED AT EDGE\tSTORE REQ/S EACH SECOND")
	for _, r := range rows {
		var each []string
		for _, x := range r.series {
			each = append(each, fmt.Sprintf("%.0f", x))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%+.1f%%\t%d\t%d\t%s\n", r.what, r.outcome, r.base, 100*r.worst, r.served, r.failed, strings.Join(each, " "))
	}
	tw.Flush()
	fmt.Fprintln(a.out, "(api v3's bake failure: edge's discovery clients answered the requests api v3 failed from api v2, which called store: a rescue)")
	fmt.Fprintln(a.out)
	tw = newTable(a.out)
	fmt.Fprintln(tw, "STORE RELEASE\tOUTCOME\tBATCHES\tWRITES ACKNOWLEDGED\tWRITES FAILED\tKEYS LOST")
	for _, r := range rolls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", r.what, r.outcome, r.batches, r.acked, r.failed, r.lost)
	}
	tw.Flush()
	fmt.Fprintln(a.out, "(the keys are read back through api after both rolls: KEYS LOST counts every acknowledged write not read back with its last value)")
	return a.report(checks, start)
}

// rollRow is what the tiers scenario measured of one rolling release.
type rollRow struct {
	what, outcome, batches, lost string
	acked                        int64
	failed                       int
}

// tiersRow is what the tiers scenario measured of one release.
type tiersRow struct {
	what, outcome  string
	base, worst    float64   // the store's mean rate in the 10 s before; the worst second's deviation from it
	series         []float64 // the store's requests in each second of the release
	failed, served int64     // at edge, during the release
	checked        bool      // held to ±TiersMaxDeviation and 0 failed
}

// tiersResult is what the tiers scenario measured and checked.
type tiersResult struct {
	rows   []tiersRow
	rolls  []rollRow
	checks []check
	start  time.Time
}

// tiersDemo is one run of the tiers scenario.
type tiersDemo struct {
	*demoMesh
	commands map[string][]string // each tier's program and flags
	load     *bench.Load
	tiersResult
}

// runTiers runs the tiers scenario, printing its timeline, and returns its
// figures and checks.
func (a *app) runTiers(keep bool) (tiersResult, error) {
	var hello, storeBin string
	dm, err := a.startDemo(keep, 10*time.Minute, "examples/hello and examples/store", func(dir string) (err error) {
		if hello, err = bench.BuildHello(dir); err == nil {
			storeBin, err = bench.BuildStore(dir)
		}
		return err
	})
	if err != nil {
		return tiersResult{}, err
	}
	defer dm.Close()
	d := &tiersDemo{demoMesh: dm, commands: map[string][]string{}}
	d.tiersResult.start = dm.start
	if err := d.apply(hello, storeBin); err != nil {
		return d.tiersResult, err
	}
	if err := d.follow("release.*.>", true); err != nil {
		return d.tiersResult, err
	}
	rates := bench.FollowRates(d.ctx, d.c.js, "store")
	for _, l := range []string{"store", "api", "edge"} {
		d.step("release %s v1: the first release, canary skipped", l)
		d.release(l, "v1")
	}
	d.step("edge answers %q", d.chain())
	d.checks = append(d.checks, check{"the chain of versions", "edge v1 → api v1 → store v1", d.chain()})

	d.load = bench.StartPaced(d.m.HTTP(), "edge", TiersRate, 16, nil, d.ended.failed)
	defer d.load.Stop()
	d.step("paced load: %d requests/s on edge through the router", TiersRate)
	// ten quiet seconds of the store's rate before the first release
	time.Sleep(11 * time.Second)
	d.measure(rates, "api v2", "api", "v2", "healthy: red/black through discovery")
	d.measure(rates, "api v3", "api", "v3", "--fail-after 5s: passes its canary, fails in the bake (edge's clients answer from api v2 meanwhile)", "--fail-after", "5s")
	d.measure(rates, "edge v2", "edge", "v2", "healthy: red/black at the router")
	if err := d.rollUnderWrites(); err != nil {
		return d.tiersResult, err
	}
	served, lost, _ := d.load.Stop()
	d.step("load: %d requests, %d failed", served+lost, lost)
	d.checks = append(d.checks, check{"the chain of versions at the end", "edge v2 → api v2 → store v2", d.chain()})
	return d.tiersResult, nil
}

// apply applies the three tiers' specs: edge behind the router, api found
// by edge through discovery, store (stateful, rolling) found by api.
func (d *tiersDemo) apply(hello, storeBin string) error {
	for _, l := range []tier{{"store", nil}, {"api", []string{"store"}}, {"edge", []string{"api"}}} {
		b := bench.NewSpec(l.name, "team-"+l.name, hello).HealthEvery(250*time.Millisecond).Canary(4*time.Second, time.Second).Bake(6 * time.Second)
		if l.name == "store" {
			// stateful: 3 slots released by rolling, one at a time, a 2 s
			// health gate and a 4 s verify per batch (whose latency metrics
			// ignore shifts under DemoLatencySlack, as the bake does)
			b.Capacity(3).Rolling(2*time.Second, 4*time.Second).LatencySlack(DemoLatencySlack)
		}
		s := b.Build()
		d.commands[l.name] = []string{hello}
		if len(l.downstream) > 0 {
			env, secrets, err := d.m.Tier(l.name, l.downstream)
			if err != nil {
				return err
			}
			s.Artifact.Env, s.Artifact.EnvSecrets = env, secrets
			d.commands[l.name] = []string{hello, "--downstream", strings.Join(l.downstream, ",")}
		}
		if l.name == "api" { // api also passes /kv/KEY to the store's slot that holds KEY
			d.commands[l.name] = append(d.commands[l.name], "--store", "store")
		}
		if l.name == "store" {
			d.commands[l.name] = []string{storeBin}
		}
		s.Artifact.Command = d.commands[l.name]
		if _, err := spec.Apply(d.ctx, d.services, s); err != nil {
			return err
		}
		desc := "behind the router"
		if l.name != "edge" {
			desc = "found through discovery by " + map[string]string{"store": "api", "api": "edge"}[l.name]
		}
		if l.name == "store" {
			desc += "; stateful: 3 slots with a volume each, released by rolling"
		}
		d.step("service %s: %d instances, %s", l.name, s.Capacity, desc)
	}
	return nil
}

// release releases service at version (with flags: a bad one, to be rolled
// back), waits for its end and checks it.
func (d *tiersDemo) release(service, version string, flags ...string) (string, time.Time, time.Time) {
	at := time.Now()
	art := events.Artifact{Command: append(append(append([]string(nil), d.commands[service]...), "--version", version), flags...)}
	id, _, err := d.c.requestVersion(service, version, art)
	got := ""
	if err == nil {
		got, err = d.ended.wait(id, service+" "+version, 2*time.Minute)
	}
	if err != nil {
		got = err.Error()
	}
	want := "completed"
	if len(flags) > 0 {
		want = "rolled_back"
	}
	d.checks = append(d.checks, check{"release " + service + " " + version, want, got})
	return id, at, time.Now()
}

// chain is edge's answer: the versions of the three tiers.
func (d *tiersDemo) chain() string {
	req, _ := http.NewRequest("GET", "http://"+d.m.HTTP()+"/", nil)
	req.Host = "edge"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// measure releases service at version and measures the store's rate in
// each second of it against the 10 s before; it checks the rate and the
// failures at the edge.
func (d *tiersDemo) measure(rates *bench.Rates, what, service, version, note string, flags ...string) {
	d.step("release %s %s: %s", service, version, note)
	served0, failed0 := d.load.OK(), d.load.Failed()
	id, from, to := d.release(service, version, flags...)
	rates.Await(to.Add(time.Second), 5*time.Second) // the last second's samples
	before := rates.Series(from.Add(-10*time.Second), from)
	during := rates.Series(from, to)
	base, worst := bench.Deviation(before, during)
	r := tiersRow{what: what, base: base, worst: worst, series: during, failed: d.load.Failed() - failed0, served: d.load.OK() - served0, checked: true}
	if rec, _, err := d.store.Get(d.ctx, id); err == nil {
		r.outcome, _, _ = summarise(rec)
	}
	d.rows = append(d.rows, r)
	d.checks = append(d.checks,
		check{fmt.Sprintf("store's rate during %s within ±%.0f%% of before", what, 100*TiersMaxDeviation), "yes", yes(worst <= TiersMaxDeviation && base > 0)},
		check{"failed requests at edge during " + what, "0", fmt.Sprint(r.failed)})
	// the next release's "before" starts quiet
	time.Sleep(10 * time.Second)
}

// rollUnderWrites rolls the store to v2 and then to a bad v3 (rolled
// back) while writers put keys through api into its slots, and checks that
// every acknowledged key is read back.
func (d *tiersDemo) rollUnderWrites() error {
	writes := bench.StartWrites(d.m.HTTP(), "api", TiersWriters, 50)
	defer writes.Stop()
	if err := writes.AwaitOK(100, 20*time.Second); err != nil {
		return err
	}
	d.step("writers: %d, each putting its 50 keys in turn through api into the store's slots", TiersWriters)
	roll := func(what, version, note string, flags ...string) {
		d.step("release store %s: %s", version, note)
		writes.Stage(what)
		acked, failed0 := writes.OK(), d.load.Failed()
		id, _, _ := d.release("store", version, flags...)
		r := rollRow{what: what, acked: writes.OK() - acked, failed: writes.Failed(what), lost: "-"}
		if rec, _, err := d.store.Get(d.ctx, id); err == nil {
			r.outcome, _, _ = summarise(rec)
			if ro := rec.Rolling; ro != nil {
				r.batches = fmt.Sprintf("%d of %d verified", ro.Verified, len(ro.Batches))
			}
		}
		d.rolls = append(d.rolls, r)
		d.checks = append(d.checks, check{"failed requests at edge during " + what, "0", fmt.Sprint(d.load.Failed() - failed0)})
	}
	roll("store v2", "v2", "healthy: rolling, one slot at a time (health gate, then verify against the slots not yet replaced)")
	roll("store v3", "v3", "--fail-slots store-1: slot store-1 refuses writes; its batch fails its verify and the replaced slots go back", "--fail-slots", "store-1")
	writes.Stop()
	lostKeys := writes.Lost()
	d.step("writes: %s; acknowledged keys lost: %d", writes.Summary(), len(lostKeys))
	for _, l := range lostKeys {
		d.step("  lost: %s", l)
	}
	d.rolls[len(d.rolls)-1].lost = fmt.Sprint(len(lostKeys))
	d.checks = append(d.checks,
		check{"acknowledged keys lost over both rolls", "0", fmt.Sprint(len(lostKeys))},
		check{"writes failed during the healthy roll", "0", fmt.Sprint(writes.Failed("store v2"))})
	return nil
}

// TiersWriters is the number of writers through api during the store's
// rolls.
const TiersWriters = 4

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// report prints the checks and fails unless every one holds.
func (a *app) report(checks []check, start time.Time) error {
	fmt.Fprintln(a.out)
	tw := newTable(a.out)
	fmt.Fprintln(tw, "CHECK\tEXPECTED\tGOT\tOK")
	failed := 0
	for _, ch := range checks {
		ok := ch.got == ch.want
		if !ok {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", ch.what, ch.want, ch.got, ok)
	}
	tw.Flush()
	if failed > 0 {
		return exitCode{code: 1, msg: fmt.Sprintf("demo: %d of %d outcomes unexpected", failed, len(checks))}
	}
	fmt.Fprintf(a.out, "demo: all %d outcomes as expected in %.1fs\n", len(checks), time.Since(start).Seconds())
	return nil
}

// tiersBench is `bench tiers`: the discovery client measured alone, then
// the tiers demo's scenario with the figures beside their targets. It is
// the CLI's, not bench's, because its scenario is the demo's.
func (a *app) tiersBench() bench.Entry {
	var changes, clients int
	return bench.Entry{
		Name:  "tiers",
		Short: "discovery client: route change → client routes by it, pick cost; the tiers scenario's store rate and failures",
		Long: `Measures the discovery client of inner tiers (shared/discovery/lb):
  - --changes route changes, each timed from its write until each of --clients
    clients (each on its own loopback connection) routes by it;
  - the cost of a pick (Pick and Done), ns and allocations;
then runs the scenario of 'redblack demo --tiers' (about 100 s) and prints the
store's worst second against its rate before each switch, and the requests
that failed at the edge during the healthy releases.`,
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&changes, "changes", 500, "route changes to time")
			f.IntVar(&clients, "clients", 10, "discovery clients that must each see every change")
		},
		Run: func(_ context.Context, env bench.Env, _ []string) error {
			dir, err := os.MkdirTemp("", "redblack-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			prop, err := bench.Propagation(filepath.Join(dir, "propagation"), changes, clients)
			if err != nil {
				return fmt.Errorf("propagation: %w", err)
			}
			ns, allocs, err := bench.PickCost(filepath.Join(dir, "pick"))
			if err != nil {
				return fmt.Errorf("pick: %w", err)
			}
			res, err := a.runTiers(false)
			if err != nil {
				return err
			}
			rows, checks := res.rows, res.checks
			fmt.Fprintln(env.Out)
			tab := newTable(env.Out)
			defer tab.Flush()
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "figure", "measured", "target")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("routes change → client routes by it, p50 / p99 / max (%d changes × %d clients)", changes, clients),
				fmt.Sprintf("%s / %s / %s", prop.P50.Round(time.Microsecond), prop.P99.Round(time.Microsecond), prop.Max.Round(time.Microsecond)), "p99 < 50ms (as the router)")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "pick (Pick + Done, 2 groups × 10 instances)", fmt.Sprintf("%.0f ns, %d allocs", ns, allocs), "0 allocs")
			var failed int64
			for _, r := range rows {
				failed += r.failed
				fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("store's rate, worst second against the 10 s before: %s (%s)", r.what, r.outcome), fmt.Sprintf("%+.1f%% of %.1f/s", 100*r.worst, r.base), "≤ 5%")
			}
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "failed requests at edge during the three releases (api v3's answered by api v2)", failed, "0")
			bad := 0
			for _, c := range checks {
				if c.got != c.want {
					bad++
				}
			}
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "scenario checks as expected", fmt.Sprintf("%d of %d", len(checks)-bad, len(checks)), "all")
			return nil
		},
	}
}

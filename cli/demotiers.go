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

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
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
	start := time.Now()
	rows, rolls, checks, err := a.runTiers(keep, start)
	if err != nil {
		return err
	}
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

// runTiers runs the tiers scenario, printing its timeline, and returns its
// figures and checks.
func (a *app) runTiers(keep bool, start time.Time) ([]tiersRow, []rollRow, []check, error) {
	step := func(format string, args ...any) {
		fmt.Fprintf(a.out, "[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	dir, err := os.MkdirTemp("", "redblack-demo-")
	if err != nil {
		return nil, nil, nil, err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	step("preparing examples/hello and examples/store")
	hello, err := bench.BuildHello(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	storeBin, err := bench.BuildStore(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg := mesh.DefaultConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = dir, "127.0.0.1:0", "127.0.0.1:0"
	level := os.Getenv("REDBLACK_DEMO_LOG")
	if level == "" {
		level = "error"
	}
	cfg.Log = logging.New(a.err, "", level)
	// a dozen instances and three hops on two cores: whenever a group's
	// processes start, the p99 of a 2 ms tier triples for seconds, and a
	// bake that compares it with the p99 before its switch rolls healthy
	// releases back (seen: "p99 latency 9.588ms is 5.0× the old group's
	// 1.929ms"). The scenario judges its bakes on errors and on p99
	// increases over DemoLatencySlack.
	cfg.Watchdog.LatencySlack = DemoLatencySlack
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	defer m.Stop()
	step("mesh up: embedded NATS at %s, router http://%s; bakes fail on errors, and on p99 increases over %s", m.URL(), m.HTTP(), DemoLatencySlack)
	a.conn.URL, a.conn.Creds = m.URL(), m.AdminCreds()
	c, err := a.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	defer c.close()
	ctx, cancel := timeout(10 * time.Minute)
	defer cancel()
	kv, err := c.kv(ctx, topology.BucketServices)
	if err != nil {
		return nil, nil, nil, err
	}
	rkv, err := c.kv(ctx, topology.BucketReleases)
	if err != nil {
		return nil, nil, nil, err
	}
	store := release.Store{KV: rkv}

	layers := []tier{{"store", nil}, {"api", []string{"store"}}, {"edge", []string{"api"}}}
	commands := map[string][]string{}
	for _, l := range layers {
		b := bench.NewSpec(l.name, "team-"+l.name, hello).HealthEvery(250*time.Millisecond).Canary(4*time.Second, time.Second).Bake(6 * time.Second)
		if l.name == "store" {
			// stateful: 3 slots released by rolling, one at a time, a 2 s
			// health gate and a 4 s verify per batch (whose latency metrics
			// ignore shifts under DemoLatencySlack, as the bake does)
			b.Capacity(3).Rolling(2*time.Second, 4*time.Second).LatencySlack(DemoLatencySlack)
		}
		s := b.Build()
		commands[l.name] = []string{hello}
		if len(l.downstream) > 0 {
			env, secrets, err := m.Tier(l.name, l.downstream)
			if err != nil {
				return nil, nil, nil, err
			}
			s.Artifact.Env, s.Artifact.EnvSecrets = env, secrets
			commands[l.name] = []string{hello, "--downstream", strings.Join(l.downstream, ",")}
		}
		if l.name == "api" { // api also passes /kv/KEY to the store's slot that holds KEY
			commands[l.name] = append(commands[l.name], "--store", "store")
		}
		if l.name == "store" {
			commands[l.name] = []string{storeBin}
		}
		s.Artifact.Command = commands[l.name]
		if _, err := spec.Apply(ctx, kv, s); err != nil {
			return nil, nil, nil, err
		}
		desc := "behind the router"
		if l.name != "edge" {
			desc = "found through discovery by " + map[string]string{"store": "api", "api": "edge"}[l.name]
		}
		if l.name == "store" {
			desc += "; stateful: 3 slots with a volume each, released by rolling"
		}
		step("service %s: %d instances, %s", l.name, s.Capacity, desc)
	}

	ended := &endings{end: map[string]events.Event{}, restored: map[string]time.Time{}}
	sub, err := c.nc.Subscribe("release.*.>", func(msg *nats.Msg) {
		ev, err := events.Decode(msg.Data)
		if err != nil || ev.Type == events.ReleaseRequested.Type() {
			return
		}
		step("  %-5s %-9s %-22s %s", ev.Subject, ev.ReleaseID[:min(8, len(ev.ReleaseID))], shortType(ev.Type), describe(ev))
		switch ev.Type {
		case events.ReleaseCompleted.Type(), events.RolledBack.Type(), events.ReleaseRejected.Type():
			ended.add(ev)
		}
	})
	if err != nil {
		return nil, nil, nil, err
	}
	defer sub.Unsubscribe()
	if err := c.nc.Flush(); err != nil {
		return nil, nil, nil, err
	}
	rates := bench.FollowRates(ctx, c.js, "store")

	var checks []check
	release := func(service, version string, flags ...string) (string, time.Time, time.Time) {
		at := time.Now()
		art := events.Artifact{Command: append(append(append([]string(nil), commands[service]...), "--version", version), flags...)}
		id, _, err := c.requestVersion(service, version, art)
		got := ""
		if err == nil {
			got, err = ended.wait(id, service+" "+version, 2*time.Minute)
		}
		if err != nil {
			got = err.Error()
		}
		want := "completed"
		if len(flags) > 0 {
			want = "rolled_back"
		}
		checks = append(checks, check{"release " + service + " " + version, want, got})
		return id, at, time.Now()
	}
	for _, l := range layers {
		step("release %s v1: the first release, canary skipped", l.name)
		release(l.name, "v1")
	}
	chain := func() string {
		req, _ := http.NewRequest("GET", "http://"+m.HTTP()+"/", nil)
		req.Host = "edge"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	step("edge answers %q", chain())
	checks = append(checks, check{"the chain of versions", "edge v1 → api v1 → store v1", chain()})

	load := bench.StartPaced(m.HTTP(), "edge", TiersRate, 16, nil, ended.failed)
	defer load.Stop()
	step("paced load: %d requests/s on edge through the router", TiersRate)
	// ten quiet seconds of the store's rate before the first release
	time.Sleep(11 * time.Second)

	var rows []tiersRow
	measure := func(what, service, version, note string, checked bool, flags ...string) {
		step("release %s %s: %s", service, version, note)
		served0, failed0 := load.OK(), load.Failed()
		id, from, to := release(service, version, flags...)
		rates.Await(to.Add(time.Second), 5*time.Second) // the last second's samples
		before := rates.Series(from.Add(-10*time.Second), from)
		during := rates.Series(from, to)
		base, worst := bench.Deviation(before, during)
		r := tiersRow{what: what, base: base, worst: worst, series: during, failed: load.Failed() - failed0, served: load.OK() - served0, checked: checked}
		if rec, _, err := store.Get(ctx, id); err == nil {
			r.outcome, _, _ = summarise(rec)
		}
		rows = append(rows, r)
		if checked {
			checks = append(checks,
				check{fmt.Sprintf("store's rate during %s within ±%.0f%% of before", what, 100*TiersMaxDeviation), "yes", yes(worst <= TiersMaxDeviation && base > 0)},
				check{"failed requests at edge during " + what, "0", fmt.Sprint(r.failed)})
		}
		// the next release's "before" starts quiet
		time.Sleep(10 * time.Second)
	}
	measure("api v2", "api", "v2", "healthy: red/black through discovery", true)
	measure("api v3", "api", "v3", "--fail-after 5s: passes its canary, fails in the bake (edge's clients answer from api v2 meanwhile)", true, "--fail-after", "5s")
	measure("edge v2", "edge", "v2", "healthy: red/black at the router", true)

	// the store rolls under writes
	writes := bench.StartWrites(m.HTTP(), "api", TiersWriters, 50)
	defer writes.Stop()
	if err := writes.AwaitOK(100, 20*time.Second); err != nil {
		return nil, nil, nil, err
	}
	step("writers: %d, each putting its 50 keys in turn through api into the store's slots", TiersWriters)
	var rolls []rollRow
	roll := func(what, version, note string, flags ...string) {
		step("release store %s: %s", version, note)
		writes.Stage(what)
		acked, failed0 := writes.OK(), load.Failed()
		id, _, _ := release("store", version, flags...)
		r := rollRow{what: what, acked: writes.OK() - acked, failed: writes.Failed(what)}
		if rec, _, err := store.Get(ctx, id); err == nil {
			r.outcome, _, _ = summarise(rec)
			if ro := rec.Rolling; ro != nil {
				r.batches = fmt.Sprintf("%d of %d verified", ro.Verified, len(ro.Batches))
			}
		}
		rolls = append(rolls, r)
		checks = append(checks, check{"failed requests at edge during " + what, "0", fmt.Sprint(load.Failed() - failed0)})
	}
	roll("store v2", "v2", "healthy: rolling, one slot at a time (health gate, then verify against the slots not yet replaced)")
	roll("store v3", "v3", "--fail-slots store-1: slot store-1 refuses writes; its batch fails its verify and the replaced slots go back", "--fail-slots", "store-1")
	writes.Stop()
	lostKeys := writes.Lost()
	step("writes: %s; acknowledged keys lost: %d", writes.Summary(), len(lostKeys))
	for _, l := range lostKeys {
		step("  lost: %s", l)
	}
	for i := range rolls {
		rolls[i].lost = "-"
	}
	if len(rolls) > 0 {
		rolls[len(rolls)-1].lost = fmt.Sprint(len(lostKeys))
	}
	checks = append(checks,
		check{"acknowledged keys lost over both rolls", "0", fmt.Sprint(len(lostKeys))},
		check{"writes failed during the healthy roll", "0", fmt.Sprint(writes.Failed("store v2"))})

	served, lost, _ := load.Stop()
	step("load: %d requests, %d failed", served+lost, lost)
	checks = append(checks, check{"the chain of versions at the end", "edge v2 → api v2 → store v2", chain()})

	return rows, rolls, checks, nil
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
			rows, _, checks, err := a.runTiers(false, time.Now())
			if err != nil {
				return err
			}
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

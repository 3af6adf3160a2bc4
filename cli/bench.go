package cli

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/logging"
)

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure redblack and print the figures beside their targets"}
	var n int
	var idle time.Duration
	backbone := &cobra.Command{
		Use:   "backbone",
		Short: "publish→consume latency, intake decisions/s, `redblack up` cold start and idle RSS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tab := newTable(a.out)
			defer tab.Flush()
			dir, err := os.MkdirTemp("", "redblack-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			sub := func(name string) string { return filepath.Join(dir, name) }
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "figure", "measured", "target")
			lat, err := bench.PublishConsume(sub("latency"), n)
			if err != nil {
				return fmt.Errorf("publish→consume: %w", err)
			}
			fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("publish→consume p50 / p99 (n=%d)", lat.N),
				fmt.Sprintf("%s / %s", lat.P50.Round(time.Microsecond), lat.P99.Round(time.Microsecond)), "p99 < 5ms")
			for _, c := range []struct {
				label    string
				services int
			}{{"intake, all accepted (n services)", n}, {"intake, one service (1 accepted, rest busy)", 1}} {
				r, err := bench.IntakeRate(sub(fmt.Sprintf("intake%d", c.services)), n, c.services)
				if err != nil {
					return fmt.Errorf("intake: %w", err)
				}
				fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("%s, n=%d", c.label, n),
					fmt.Sprintf("%.0f decisions/s", r.PerSecond()), "≥ 2,000/s")
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			up, err := bench.UpProcess(self, sub("up"), idle)
			if err != nil {
				return fmt.Errorf("up: %w", err)
			}
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "redblack up: exec to ready", up.Ready.Round(time.Millisecond), "< 2s")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("redblack up: RSS after %s idle (with its data plane process)", up.Idle), fmt.Sprintf("%.1f MB", float64(up.IdleRSS)/1e6), "< 150 MB")
			return nil
		},
	}
	backbone.Flags().IntVar(&n, "n", 2000, "messages and requests per measurement")
	backbone.Flags().DurationVar(&idle, "idle", 5*time.Second, "how long `redblack up` idles before its RSS is read")
	var kills int
	fleetCmd := &cobra.Command{
		Use:   "fleet",
		Short: "groups of 10 and 100 instances to all up, SIGKILL to replacement up, memory per instance",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tab := newTable(a.out)
			defer tab.Flush()
			dir, hello, done, err := helloDir()
			if err != nil {
				return err
			}
			defer done()
			r, err := bench.FleetRun(filepath.Join(dir, "mesh"), hello, []int{10, 100}, kills)
			if err != nil {
				return err
			}
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "figure (examples/hello, local provider)", "measured", "target")
			for _, n := range []int{10, 100} {
				fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("%d-instance group: create → all up (ready)", n), r.ToReady[n].Round(time.Millisecond), "< 10s")
			}
			fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("SIGKILL → replacement up, p50 / max (n=%d)", r.Replace.N),
				fmt.Sprintf("%s / %s", r.Replace.P50.Round(time.Millisecond), r.Replace.Max.Round(time.Millisecond)), "< 2s")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "memory per instance (RSS) min / avg / max",
				fmt.Sprintf("%.1f / %.1f / %.1f MB", mb(r.RSSMin), mb(r.RSSAvg), mb(r.RSSMax)), "-")
			return nil
		},
	}
	fleetCmd.Flags().IntVar(&kills, "kills", 5, "instances to SIGKILL for the replacement figure")
	var dur time.Duration
	var rounds, conns, rate int
	var inProcess, showConfigs bool
	var routerEnv []string
	routerCmd := &cobra.Command{
		Use:   "router",
		Short: "requests/s, p50, p99 and CPU per request through the router, nginx, haproxy and Caddy, and straight to a backend, in one run",
		Long: `Starts the mesh with a 3-instance hello group and the router as its own process
(as under redblack up), then nginx (2 workers, keep-alive 256 to the upstreams,
no limit on a connection's requests), haproxy (2 threads, http-reuse always) and
Caddy (the Go peer, least_conn) and a Go forwarder (a goroutine per connection
copying bytes, no HTTP: the floor of any Go proxy built that way) in front of
the same 3 instances, and drives:

  - the same bounded wrk load (2 threads, --connections, --duration) through
    each, interleaved over --rounds: requests/s, p50, p99;
  - a fixed rate below saturation (--rate requests/s with hey, for --duration)
    through each proxy, reading the proxy's CPU time (its process and its
    children: nginx's workers) from /proc before and after: CPU per request,
    the figure that holds on a noisy machine.

Every figure is also printed as a ratio to nginx. --configs prints the anchors'
configurations. Needs nginx, haproxy, caddy, wrk and hey
(apt-get install nginx haproxy caddy wrk hey).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := mesh.DefaultConfig()
			if !inProcess {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				cfg.DataPlane = &mesh.DataPlane{Exe: self, LogLevel: "error", Env: routerEnv}
			}
			dir, bm, err := benchMeshWith(cfg, "hello-v001")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			defer bm.Stop()
			nc, err := bm.M.Connect("bench")
			if err != nil {
				return err
			}
			g, err := bench.List(nc, "hello-v001")
			nc.Close()
			if err != nil {
				return err
			}
			var backends []string
			for _, i := range g.Instances {
				backends = append(backends, i.Address)
			}
			var anchors []*bench.Anchor
			defer func() {
				for _, an := range anchors {
					an.Stop()
				}
			}()
			self, err := os.Executable()
			if err != nil {
				return err
			}
			forwarder := func(string, []string) (*bench.Anchor, error) { return bench.StartForwarder(self, backends) }
			for _, start := range []func(string, []string) (*bench.Anchor, error){bench.StartNginx, bench.StartHAProxy, bench.StartCaddy, forwarder} {
				d, err := os.MkdirTemp(dir, "anchor-")
				if err != nil {
					return err
				}
				an, err := start(d, backends)
				if err != nil {
					return err
				}
				anchors = append(anchors, an)
			}
			routerPid := bm.M.DataPlanePid()
			if routerPid == 0 {
				routerPid = os.Getpid() // in process: the whole mesh's CPU
			}
			type target struct {
				name, url, host string
				pid             int
			}
			targets := []target{{"direct (one backend)", "http://" + backends[0] + "/", "", 0}}
			for _, an := range anchors {
				targets = append(targets, target{an.Name, fmt.Sprintf("http://127.0.0.1:%d/", an.Port), "hello", an.Pid()})
			}
			targets = append(targets, target{"redblack router", "http://" + bm.M.HTTP() + "/", "hello", routerPid})
			sums := map[string]*bench.WrkResult{}
			cpus := map[string]bench.CPUResult{}
			for r := 0; r < rounds; r++ {
				for _, t := range targets {
					fmt.Fprintf(a.err, "round %d of %d: wrk through %s\n", r+1, rounds, t.name)
					l, err := bench.Wrk(t.name, t.url, t.host, conns, dur)
					if err != nil {
						return err
					}
					s := sums[t.name]
					if s == nil {
						s = &bench.WrkResult{Target: t.name}
						sums[t.name] = s
					}
					s.RPS += l.RPS / float64(rounds)
					s.P50 += l.P50 / time.Duration(rounds)
					s.P99 += l.P99 / time.Duration(rounds)
					s.Requests += l.Requests
					s.Errors += l.Errors
				}
			}
			for _, t := range targets {
				if t.pid == 0 {
					continue
				}
				fmt.Fprintf(a.err, "%d requests/s through %s for %s: its CPU\n", rate, t.name, dur)
				c, err := bench.CPUPerRequest(t.pid, t.url, t.host, rate, 16, dur)
				if err != nil {
					return err
				}
				cpus[t.name] = c
			}
			ref, refCPU := sums["nginx"], cpus["nginx"]
			where := "the router as its own process (as under up)"
			if len(routerEnv) > 0 {
				where += " with " + strings.Join(routerEnv, " ")
			}
			if inProcess {
				where = "the router in this process (its CPU is the whole mesh's)"
			}
			fmt.Fprintf(a.out, "wrk -t2 -c%d -d%s, %d round(s) interleaved, mean per round; then %d requests/s for %s with hey -c16, CPU from /proc; 3 hello backends; %s\n",
				conns, dur, rounds, rate, dur, where)
			tab := newTable(a.out)
			fmt.Fprintf(tab, "%v\t%v\t%v\t%v\t%v\t%v\t%v\t%v\t%v\n", "target", "rps", "p50", "p99", "errors", "CPU/request", "rps/nginx", "p99/nginx", "CPU/req/nginx")
			for _, t := range targets {
				s := sums[t.name]
				cpu, cpuRatio := "-", "-"
				if c, ok := cpus[t.name]; ok {
					cpu = fmt.Sprintf("%.1fµs", float64(c.PerRequest)/float64(time.Microsecond))
					cpuRatio = fmt.Sprintf("%.2f", float64(c.PerRequest)/float64(refCPU.PerRequest))
					s.Errors += c.Errors
				}
				fmt.Fprintf(tab, "%v\t%.0f\t%v\t%v\t%d\t%s\t%.2f\t%.2f\t%s\n", t.name, s.RPS, s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond),
					s.Errors, cpu, s.RPS/ref.RPS, float64(s.P99)/float64(ref.P99), cpuRatio)
			}
			tab.Flush()
			best := ref // the best of nginx and haproxy
			if h := sums["haproxy"]; h.RPS > best.RPS {
				best = h
			}
			rb := sums["redblack router"]
			fmt.Fprintf(a.out, "redblack against the best of nginx and haproxy (%s): %.2f× its requests/s, p99 %.2f× its p99; CPU per request %.2f× nginx's\n",
				best.Target, rb.RPS/best.RPS, float64(rb.P99)/float64(best.P99), float64(cpus["redblack router"].PerRequest)/float64(refCPU.PerRequest))
			floor := anchors[len(anchors)-1]
			fmt.Fprintf(a.out, "the Go floor (%s, a goroutine per connection copying bytes): CPU per request %.2f× nginx's; redblack's is %.2f× the floor's\n",
				floor.Name, float64(cpus[floor.Name].PerRequest)/float64(refCPU.PerRequest), float64(cpus["redblack router"].PerRequest)/float64(cpus[floor.Name].PerRequest))
			if showConfigs {
				for _, an := range anchors {
					fmt.Fprintf(a.out, "\n# %s\n%s", an.Name, an.Config)
				}
			}
			return nil
		},
	}
	routerCmd.Flags().DurationVar(&dur, "duration", 10*time.Second, "wrk duration per target and round, and the fixed-rate run's")
	routerCmd.Flags().IntVar(&rounds, "rounds", 2, "interleaved rounds")
	routerCmd.Flags().IntVar(&conns, "connections", 64, "wrk connections")
	routerCmd.Flags().IntVar(&rate, "rate", 5000, "requests/s of the CPU-per-request run (below every proxy's saturation)")
	routerCmd.Flags().BoolVar(&inProcess, "in-process-router", false, "run the router in this process (the old bench), not as its own process")
	routerCmd.Flags().BoolVar(&showConfigs, "configs", false, "print the anchors' configurations")
	routerCmd.Flags().StringArrayVar(&routerEnv, "router-env", nil, "KEY=VALUE in the router process's environment (GOMAXPROCS, GOGC…); repeatable")

	var switches, switchKills, workers, upKills int
	var every, upDown time.Duration
	switchCmd := &cobra.Command{
		Use:   "switch",
		Short: "load through the router across switches and instance kills: failed requests, routes write → serving",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tab := newTable(a.out)
			defer tab.Flush()
			dir, bm, err := benchMesh("hello-v001", "hello-v002")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			defer bm.Stop()
			r, err := bench.SwitchRun(bm, switches, switchKills, workers, every)
			if err != nil {
				return err
			}
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "figure", "measured", "target")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("load: %d workers for %s, %d switches, %d kills", workers, r.Duration.Round(time.Second), r.Switches, r.Kills),
				fmt.Sprintf("%d requests", r.Requests), "≥ 20s, 20 switches, 3 kills")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "failed requests", fmt.Sprint(r.Failed), "0")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("routes write → new group serving, p50 / p99 (n=%d)", r.WriteToServe.N),
				fmt.Sprintf("%s / %s", r.WriteToServe.P50.Round(time.Microsecond), r.WriteToServe.P99.Round(time.Microsecond)), "p99 < 50ms")
			if upKills == 0 {
				return nil
			}
			// the same load against `redblack up` as a process, SIGKILLed
			hdir, hello, self, done, err := upDir()
			if err != nil {
				return err
			}
			defer done()
			k, err := bench.UpKills(cmd.Context(), bench.UpKillOptions{Redblack: self, Hello: hello, Dir: hdir, Kills: upKills, Down: upDown, Workers: workers,
				Progress: func(s string) { fmt.Fprintln(a.err, s) }})
			if err != nil {
				return err
			}
			stale := make([]string, len(k.Stale))
			for i, s := range k.Stale {
				stale[i] = fmt.Sprintf("%.1fs", s)
			}
			fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("`redblack up` SIGKILLed and started again, dead %s each time, under %d workers", upDown, workers),
				fmt.Sprintf("%d kills, %d requests", k.Kills, k.Requests), "3 kills")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "failed requests while up was killed and restarted", fmt.Sprint(k.Failed), "0")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "data plane pid: first start → each restart (adopted)",
				fmt.Sprintf("%v (%d of %d adopted)", k.Pids, k.Adopted, k.Kills), "unchanged")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "the router's /healthz while up was dead: tables stale for", strings.Join(stale, " "), "said")
			return nil
		},
	}
	switchCmd.Flags().IntVar(&upKills, "up-kills", 3, "then run `redblack up` as a process under the same load and SIGKILL it this many times (0: none)")
	switchCmd.Flags().DurationVar(&upDown, "up-down", time.Second, "how long up stays dead at each kill")
	switchCmd.Flags().IntVar(&switches, "switches", 20, "switches")
	switchCmd.Flags().IntVar(&switchKills, "kills", 3, "instances SIGKILLed during the run")
	switchCmd.Flags().IntVar(&workers, "workers", 8, "concurrent load workers")
	switchCmd.Flags().DurationVar(&every, "every", 1100*time.Millisecond, "time between switches")
	var jo bench.JudgeOptions
	judgeCmd := &cobra.Command{
		Use:   "judge",
		Short: "whole canaries and bakes, seeded: healthy failure rates and detection, the sequential judge beside the fixed-horizon one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			jo.Progress = func(s string) { fmt.Fprintln(a.err, s) }
			cs := bench.DefaultSpec().Strategy
			fmt.Fprintf(a.out, "Whole canaries with the default strategy (%s, a look every %s, confidence %g), log-normal latency (median 20 ms, σ 0.5) on the router's buckets.\n",
				cs.Canary.Duration.D(), cs.Canary.Interval.D(), cs.Canary.Confidence)
			fmt.Fprintf(a.out, "Sequential judge: %d trials a row; fixed-horizon judge (the one it replaced): %d trials a row.\n\n", jo.Trials, jo.FixedTrials)
			tw := newTable(a.out)
			fmt.Fprintln(tw, "scenario\trequests/group/look\tsequential: failed\tmedian time to fail\tfixed horizon: failed\tmedian time to fail\ttarget")
			for _, r := range bench.JudgeCanaries(jo) {
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
				fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t%s\t%s\t%s\t%s\n", r.Name, r.PerLook, 100*r.New.Failed, at(r.New.MedianLooks), old, oldAt, target)
			}
			tw.Flush()
			fmt.Fprintf(a.out, "\nWhole bakes with the default bake strategy (%s, confidence %g, error tolerance %g, ceiling %g, p99 ratio %g), one sample a second, %d trials a row.\n\n",
				cs.Bake.Duration.D(), cs.Bake.Confidence, cs.Bake.ErrorTolerance, cs.Bake.MaxErrorRate, cs.Bake.MaxLatencyRatio, jo.BakeTrials)
			tw = newTable(a.out)
			fmt.Fprintln(tw, "bake\trequests/s\tdegrades after\trolled back\tmedian time to detect\ttarget")
			for _, r := range bench.JudgeBakes(jo) {
				onset, target, took := r.Onset.String(), "≥ 95%, seconds", r.Figures.MedianDetect.String()
				if r.Healthy {
					onset, target, took = "-", fmt.Sprintf("≤ %.3g%%", 100*(1-cs.Bake.Confidence)), "-"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f%%\t%s\t%s\n", r.Name, r.RatePerSecond, onset, 100*r.Figures.RolledBack, took, target)
			}
			return tw.Flush()
		},
	}
	judgeCmd.Flags().IntVar(&jo.Trials, "trials", 1000, "whole canaries per row (sequential judge)")
	judgeCmd.Flags().IntVar(&jo.FixedTrials, "fixed-trials", 300, "whole canaries per row through the fixed-horizon judge (0: skip it)")
	judgeCmd.Flags().IntVar(&jo.BakeTrials, "bake-trials", 1000, "whole bakes per row")
	var bad, healthy int
	var failAfter time.Duration
	rollbackCmd := &cobra.Command{
		Use:   "rollback",
		Short: "releases that go bad after the switch, with the router's rescues on and off: detection, first bad response → all traffic back on the old group, failed and rescued requests; control-plane overhead of healthy releases",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tab := newTable(a.out)
			defer tab.Flush()
			dir, hello, done, err := helloDir()
			if err != nil {
				return err
			}
			defer done()
			level := os.Getenv("REDBLACK_BENCH_LOG") // the services' own log: errors only unless asked
			if level == "" {
				level = "error"
			}
			progress := func(s string) { fmt.Fprintln(a.err, s) }
			r, err := bench.RollbackRun(filepath.Join(dir, "mesh"), hello, bad, healthy, failAfter, false, logging.New(a.err, "", level), progress)
			if err != nil {
				return err
			}
			progress("the same bad releases with the router's rescues off:")
			off, err := bench.RollbackRun(filepath.Join(dir, "mesh-norescue"), hello, bad, 0, failAfter, true, logging.New(a.err, "", level), progress)
			if err != nil {
				return err
			}
			fmt.Fprintf(tab, "%v\t%v\t%v\t%v\t%v\t%v\t%v\n", "release", "rescues", "first bad → rollback requested", "→ restored", "failed GETs", "failed POSTs", "rescued")
			var failedOn, failedOff, postsOn int64
			var rescued uint64
			for _, run := range []struct {
				name string
				r    bench.RollbackResult
			}{{"on", r}, {"off", off}} {
				for _, rb := range run.r.Rollbacks {
					fmt.Fprintf(tab, "%v\t%v\t%v\t%v\t%d\t%d\t%d\n", rb.Version, run.name, rb.Detect().Round(time.Millisecond), rb.Took().Round(time.Millisecond), rb.Failed, rb.FailedPosts, rb.Rescued)
					if run.name == "on" {
						failedOn, postsOn, rescued = failedOn+rb.Failed, postsOn+rb.FailedPosts, rescued+rb.Rescued
					} else {
						failedOff += rb.Failed
					}
				}
			}
			tab.Flush()
			fmt.Fprintln(a.out)
			fmt.Fprintf(tab, "%v\t%v\t%v\t%v\n", "figure", "measured", "target", "anchor")
			fmt.Fprintf(tab, "%v\t%v\t%v\t%v\n", fmt.Sprintf("first bad response → 100%% on old group, p50 (n=%d)", len(r.Rollbacks)), r.Percentile(0.5).Round(time.Millisecond), "< 1s", "Flagger interval×threshold: 1–10 min")
			fmt.Fprintf(tab, "%v\t%v\t%v\t%v\n", "first bad response → 100% on old group, p95", r.Percentile(0.95).Round(time.Millisecond), "< 2s", "CodeDeploy alarms: ≥ 1 min")
			fmt.Fprintf(tab, "%v\t%v\t%v\t%v\n", "first bad response → rollback requested, p50: rescues on / off", fmt.Sprintf("%s / %s", r.DetectPercentile(0.5).Round(time.Millisecond), off.DetectPercentile(0.5).Round(time.Millisecond)), "the same", "-")
			fmt.Fprintf(tab, "%v\t%v\t%v\t%v\n", "failed GETs (idempotent) in all bad releases: rescues on / off", fmt.Sprintf("%d / %d", failedOn, failedOff), "0 with rescues", "every rollback above: users see the bad group until restored")
			fmt.Fprintf(tab, "%v\t%v\t%v\t%v\n", "rescued requests (the bad groups' samples), rescues on", rescued, "-", "-")
			fmt.Fprintf(tab, "%v\t%v\t%v\t%v\n", "failed POSTs (not rescued: the spec does not opt in), rescues on", postsOn, "> 0, counted", "-")
			for i, o := range r.Healthy {
				fmt.Fprintf(tab, "%v\t%v\t%v\t%v\n", fmt.Sprintf("healthy release %d: control-plane overhead", i+1), o.ControlPlane().Round(time.Millisecond), "< 1s",
					fmt.Sprintf("(%s in all − %s canary+bake − %s boot)", o.Total.Round(time.Millisecond), o.Configured, o.Boot.Round(time.Millisecond)))
			}
			return nil
		},
	}
	var slots int
	var gate, verify time.Duration
	rollingCmd := &cobra.Command{
		Use:   "rolling",
		Short: "a stateful store rolled one slot at a time under writes: time per batch, the control plane's overhead per batch, failed writes and lost keys; then a bad roll rolled back",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, hello, done, err := helloDir()
			if err != nil {
				return err
			}
			defer done()
			store, err := buildStore(dir)
			if err != nil {
				return err
			}
			level := os.Getenv("REDBLACK_BENCH_LOG")
			if level == "" {
				level = "error"
			}
			progress := func(s string) { fmt.Fprintln(a.err, s) }
			r, err := bench.RollingRun(filepath.Join(dir, "mesh"), hello, store, slots, gate, verify, logging.New(a.err, "", level), progress)
			if err != nil {
				return err
			}
			tab := newTable(a.out)
			defer tab.Flush()
			fmt.Fprintf(tab, "%v\t%v\t%v\t%v\t%v\t%v\n", "batch", "slots", "in all", "slots down→up", "gate + verify", "control plane")
			var worst time.Duration
			for _, b := range r.Batches {
				worst = max(worst, b.Overhead)
				fmt.Fprintf(tab, "%d\t%s\t%s\t%s\t%s\t%s\n", b.Batch, strings.Join(b.Slots, ","), b.Total.Round(time.Millisecond), b.Up.Round(time.Millisecond), (b.Gate + b.Verify).Round(time.Millisecond), b.Overhead.Round(time.Millisecond))
			}
			tab.Flush()
			fmt.Fprintln(a.out)
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "figure", "measured", "target")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("control-plane overhead per batch, worst of %d", len(r.Batches)), worst.Round(time.Millisecond), "< 200ms beyond the health gate and verify")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "writes during the healthy roll: acknowledged / failed", fmt.Sprintf("%d / %d", r.Acked, r.Failed), "failed 0")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "bad roll (slot store-1 refuses writes)", fmt.Sprintf("%s at batch %d, every slot back in %s", r.BadOutcome, r.BadBatch, r.BadBack.Round(time.Millisecond)), "rolled_back at batch 2")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "writes failed during the bad roll (store-1's refusals until it went back)", r.BadFailed, "counted")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "acknowledged keys lost over both rolls", len(r.Lost), "0")
			return nil
		},
	}
	rollingCmd.Flags().IntVar(&slots, "slots", 3, "the store's slots (one batch each)")
	rollingCmd.Flags().DurationVar(&gate, "health-gate", 2*time.Second, "the health gate of each batch")
	rollingCmd.Flags().DurationVar(&verify, "verify", 4*time.Second, "the verify of each batch")
	rollbackCmd.Flags().IntVar(&bad, "n", 10, "releases that fail after the switch")
	rollbackCmd.Flags().IntVar(&healthy, "healthy", 3, "healthy releases to measure the overhead on")
	rollbackCmd.Flags().DurationVar(&failAfter, "fail-after", 3*time.Second, "how long after its start a bad instance begins to fail")
	var chaosFor, chaosMean, chaosMin time.Duration
	chaosCmd := &cobra.Command{
		Use:   "chaos",
		Short: "Chaos Monkey unleashed in fast mode on hello (3 instances) under load: kills/min, failed requests, kill → replacement up",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tab := newTable(a.out)
			defer tab.Flush()
			dir, hello, done, err := helloDir()
			if err != nil {
				return err
			}
			defer done()
			r, err := bench.ChaosRun(filepath.Join(dir, "mesh"), hello, chaosFor, chaosMean, chaosMin)
			if err != nil {
				return err
			}
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "figure", "measured", "target")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", fmt.Sprintf("kills in %s (mean %s, min %s between)", chaosFor, chaosMean, chaosMin), fmt.Sprintf("%d (%.1f/min)", r.Kills, r.KillsPerMinute()), "—")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "kills skipped by the checks (group not whole yet, …)", fmt.Sprint(r.Skipped), "—")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "requests through the router / failed", fmt.Sprintf("%d / %d", r.Served+r.Failed, r.Failed), "0 failed")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "kill → replacement up, p50 / max", fmt.Sprintf("%s / %s", r.ReplacementPercentile(0.5).Round(time.Millisecond), r.ReplacementPercentile(1).Round(time.Millisecond)), "—")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "victims not replaced", fmt.Sprint(len(r.Unreplaced)), "0")
			fmt.Fprintf(tab, "%v\t%v\t%v\n", "kills in the audit trail (FLEET stream)", fmt.Sprint(r.AuditTerminated), fmt.Sprint(r.Kills))
			return nil
		},
	}
	chaosCmd.Flags().DurationVar(&chaosFor, "for", 30*time.Second, "how long the monkey kills")
	chaosCmd.Flags().DurationVar(&chaosMean, "mean", time.Second, "mean time between kills (fast mode)")
	chaosCmd.Flags().DurationVar(&chaosMin, "min", 2*time.Second, "min time between kills")
	var crashKills int
	var crashSeed uint64
	crashCmd := &cobra.Command{
		Use:   "crash",
		Short: "the crash harness: releases of every kind under load, `redblack up` SIGKILLed at a random point of each, invariants after each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, hello, self, done, err := upDir()
			if err != nil {
				return err
			}
			defer done()
			r, err := bench.Crash(cmd.Context(), bench.CrashOptions{Redblack: self, Hello: hello, Dir: dir, Kills: crashKills, Seed: crashSeed,
				Progress: func(s string) { fmt.Fprintln(a.err, s) }})
			if err != nil {
				return err
			}
			sort.Slice(r.Recoveries, func(i, j int) bool { return r.Recoveries[i] < r.Recoveries[j] })
			p := func(q float64) time.Duration {
				if len(r.Recoveries) == 0 {
					return 0
				}
				return r.Recoveries[min(len(r.Recoveries)-1, int(q*float64(len(r.Recoveries))))].Round(time.Millisecond)
			}
			tw := newTable(a.out)
			fmt.Fprintln(tw, "figure\tmeasured\ttarget")
			fmt.Fprintf(tw, "kills of redblack up (SIGKILL), by the phase of the release\t%d: %v\t≥ 50, every phase\n", r.Kills, r.KilledIn)
			fmt.Fprintf(tw, "releases by outcome\t%v\tall terminal\n", r.Outcomes)
			fmt.Fprintf(tw, "kill → redblack up ready again, p50 / max\t%s / %s\t-\n", p(0.5), p(1))
			fmt.Fprintf(tw, "invariant checks / violations\t%d / %d\t0 violations\n", r.Checks, len(r.Violations))
			fmt.Fprintf(tw, "requests; failed while up ran / while it was down\t%d; %d / %d\t- (bad releases fail requests beyond the rescue budget; the data plane serves while up is dead)\n", r.Requests, r.Failed, r.FailedWhileDown)
			fmt.Fprintf(tw, "failed while up ran, outside every bad release's window\t%d\t0\n", r.Unexplained)
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, v := range r.Violations {
				fmt.Fprintln(a.out, "VIOLATION:", v)
			}
			if len(r.Violations) > 0 {
				return exitCode{code: 1, msg: fmt.Sprintf("%d invariant violations", len(r.Violations))}
			}
			return nil
		},
	}
	crashCmd.Flags().IntVar(&crashKills, "kills", 60, "releases, each with one SIGKILL of redblack up")
	crashCmd.Flags().Uint64Var(&crashSeed, "seed", 1, "seed of the kill points")
	var ghostReleases, ghostEvery int
	ghostsCmd := &cobra.Command{
		Use:   "ghosts",
		Short: "many releases in a row: the routes entry, the instances bucket, the router's registry, METRICS and hello processes stay bounded",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, hello, done, err := helloDir()
			if err != nil {
				return err
			}
			defer done()
			tw := newTable(a.out)
			fmt.Fprintln(tw, "RELEASES	ROUTE GROUPS	ROUTE BYTES	INSTANCE ENTRIES	REGISTRY	PROCESSES	METRICS MSGS	METRICS BYTES	SAMPLES/S")
			_, err = bench.GhostsRun(filepath.Join(dir, "mesh"), hello, ghostReleases, ghostEvery, logging.New(a.err, "", "error"), func(g bench.Ghosts) {
				fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\n", g.Releases, g.RouteGroups, g.RouteBytes, g.Instances, g.Backends, g.Processes, g.MetricsMsgs, g.MetricsBytes, g.SamplesPerSec)
				tw.Flush()
			})
			fmt.Fprintln(a.out, "bounded: every column but METRICS (kept 15 min, at most 256 MiB) stays flat as releases pile up; before issue 13 each release left a weight-0 group in routes, sampled for ever")
			return err
		},
	}
	ghostsCmd.Flags().IntVar(&ghostReleases, "releases", 200, "releases in a row")
	ghostsCmd.Flags().IntVar(&ghostEvery, "every", 25, "measure after every this many")
	var clusterN int
	clusterCmd := &cobra.Command{
		Use:   "cluster",
		Short: "the one-process embedded mesh beside up --nodes 3 --copies 2 (R3, each service its own process): publish→consume, a release, a node's death, a copy's death",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, hello, self, done, err := upDir()
			if err != nil {
				return err
			}
			defer done()
			r, err := bench.ClusterRun(self, dir, hello, clusterN, func(s string) { fmt.Fprintln(a.err, s) })
			if err != nil {
				return err
			}
			ms := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
			tab := newTable(a.out)
			defer tab.Flush()
			fmt.Fprintln(tab, "figure\tembedded (1 process, R1)\tcluster (3 nodes, R3, 9 processes: --copies 2)\ttarget")
			fmt.Fprintf(tab, "publish→consume p50 / p99 (n=%d)\t%s / %s\t%s / %s\tp99 < 5ms embedded\n", clusterN,
				ms(r.Embedded.PubConsume.P50), ms(r.Embedded.PubConsume.P99), ms(r.Cluster.PubConsume.P50), ms(r.Cluster.PubConsume.P99))
			fmt.Fprintf(tab, "healthy release, request → completed (%s configured)\t%s\t%s\t-\n", r.Embedded.Configured,
				r.Embedded.Release.Round(time.Millisecond), r.Cluster.Release.Round(time.Millisecond))
			fmt.Fprintf(tab, "  of which control plane and boots (beyond the configured)\t%s\t%s\t< 1s\n",
				(r.Embedded.Release - r.Embedded.Configured).Round(time.Millisecond), (r.Cluster.Release - r.Cluster.Configured).Round(time.Millisecond))
			fmt.Fprintf(tab, "SIGKILL of the RELEASES leader (%s) → the audit log takes a write\t-\t%s\t-\n", r.LeaderNode, r.Recovered.Round(time.Millisecond))
			fmt.Fprintf(tab, "SIGKILL → every stream and bucket led again\t-\t%s\t-\n", r.Settled.Round(time.Millisecond))
			fmt.Fprintf(tab, "SIGKILL → the next release accepted\t-\t%s\t-\n", r.Resumed.Round(time.Millisecond))
			if r.Stalled != "" {
				fmt.Fprintf(tab, "that release\t-\tSTALLED: %s\tcompletes\n", r.Stalled)
				return nil
			}
			fmt.Fprintf(tab, "that release, request → completed\t-\t%s\t-\n", r.ReleaseAfterTheKill.Round(time.Millisecond))
			fmt.Fprintf(tab, "SIGKILL of the canary copy judging a release → the other holds its lease\t-\t%s\t< 5s (the ack wait)\n", r.Handover.Round(time.Millisecond))
			fmt.Fprintf(tab, "that release, request → completed\t-\t%s\t-\n", r.ReleaseWithHandover.Round(time.Millisecond))
			return nil
		},
	}
	clusterCmd.Flags().IntVar(&clusterN, "n", 1000, "publish→consume round trips per shape")
	var changes, clients int
	tiersCmd := &cobra.Command{
		Use:   "tiers",
		Short: "discovery client: route change → client routes by it, pick cost; the tiers scenario's store rate and failures",
		Long: `Measures the discovery client of inner tiers (shared/discovery/lb):
  - --changes route changes, each timed from its write until each of --clients
    clients (each on its own loopback connection) routes by it;
  - the cost of a pick (Pick and Done), ns and allocations;
then runs the scenario of 'redblack demo --tiers' (about 100 s) and prints the
store's worst second against its rate before each switch, and the requests
that failed at the edge during the healthy releases.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			start := time.Now()
			rows, _, checks, err := a.runTiers(false, start)
			if err != nil {
				return err
			}
			tab := newTable(a.out)
			defer tab.Flush()
			fmt.Fprintln(a.out)
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
	tiersCmd.Flags().IntVar(&changes, "changes", 500, "route changes to time")
	tiersCmd.Flags().IntVar(&clients, "clients", 10, "discovery clients that must each see every change")
	var listen string
	forwarderCmd := &cobra.Command{
		Use:    "forwarder BACKEND...",
		Short:  "copy bytes between each connection on --listen and one of BACKEND (host:port), round robin: bench router's Go floor",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, backends []string) error {
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			return bench.Forward(l, backends)
		},
	}
	forwarderCmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on")
	cmd.AddCommand(tiersCmd, backbone, fleetCmd, routerCmd, forwarderCmd, switchCmd, judgeCmd, rollbackCmd, rollingCmd, chaosCmd, crashCmd, ghostsCmd, clusterCmd)
	return cmd
}

func mb(b int64) float64 { return float64(b) / 1e6 }

// benchMesh makes a temp dir, builds hello into it, starts the mesh with a
// 3-instance group per name and switches all traffic to the first.
func benchMesh(groups ...string) (string, *bench.Mesh, error) {
	return benchMeshWith(mesh.DefaultConfig(), groups...)
}

// benchMeshWith is benchMesh from cfg (with cfg.DataPlane: the router as
// its own process).
func benchMeshWith(cfg mesh.Config, groups ...string) (string, *bench.Mesh, error) {
	dir, err := os.MkdirTemp("", "redblack-bench-")
	if err != nil {
		return "", nil, err
	}
	hello, err := buildHello(dir)
	if err == nil {
		var bm *bench.Mesh
		if bm, err = bench.StartMeshWith(cfg, filepath.Join(dir, "mesh"), hello, 3, groups...); err == nil {
			if err = bm.Switch(groups[0]); err == nil {
				return dir, bm, nil
			}
			bm.Stop()
		}
	}
	os.RemoveAll(dir)
	return "", nil, err
}

// helloDir makes a temp dir with examples/hello built in it; done removes it.
func helloDir() (dir, hello string, done func(), err error) {
	dir, err = os.MkdirTemp("", "redblack-bench-")
	if err != nil {
		return "", "", nil, err
	}
	done = func() { os.RemoveAll(dir) }
	if hello, err = buildHello(dir); err != nil {
		done()
		return "", "", nil, err
	}
	return dir, hello, done, nil
}

// upDir is helloDir and this executable, for the benches that run
// `redblack up` as a process.
func upDir() (dir, hello, self string, done func(), err error) {
	if self, err = os.Executable(); err != nil {
		return "", "", "", nil, err
	}
	dir, hello, done, err = helloDir()
	return dir, hello, self, done, err
}

// newTable is how the CLI prints a table: text/tabwriter, so that columns
// line up whatever the widths (Flush prints it).
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/redblack/redblack/deploy/mesh"
)

// routerOptions are the flags of `bench router`.
type routerOptions struct {
	dur                 time.Duration
	rounds, conns, rate int
	inProcess, configs  bool
	abuse               bool
	abuseConns          int
	routerEnv           []string
}

// routerTarget is one proxy (or the backend itself) that bench router
// drives load through.
type routerTarget struct {
	name, url, host string
	pid             int // whose CPU is read (0: none)
}

// routerBench is `bench router`.
func routerBench() Entry {
	var o routerOptions
	return Entry{
		Name:  "router",
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

With --abuse, instead of the load, one address opens --abuse-conns connections
to each proxy in turn, sends one byte on each and holds them (slowloris), while
16 other clients send requests for --duration: how many of theirs succeed, and
the proxy's resident memory before and at its peak.

Every figure is also printed as a ratio to nginx. --configs prints the anchors'
configurations. Needs nginx, haproxy, caddy, wrk and hey
(apt-get install nginx haproxy caddy wrk hey).`,
		Flags: func(f *pflag.FlagSet) {
			f.DurationVar(&o.dur, "duration", 10*time.Second, "wrk duration per target and round, and the fixed-rate run's")
			f.IntVar(&o.rounds, "rounds", 2, "interleaved rounds")
			f.IntVar(&o.conns, "connections", 64, "wrk connections")
			f.IntVar(&o.rate, "rate", 5000, "requests/s of the CPU-per-request run (below every proxy's saturation)")
			f.BoolVar(&o.inProcess, "in-process-router", false, "run the router in this process (the old bench), not as its own process")
			f.BoolVar(&o.configs, "configs", false, "print the anchors' configurations")
			f.BoolVar(&o.abuse, "abuse", false, "instead of the load: one address holds --abuse-conns connections with one byte sent on each, while other clients send requests for --duration; each proxy's ok % and memory")
			f.IntVar(&o.abuseConns, "abuse-conns", 10050, "the held connections of --abuse")
			f.StringArrayVar(&o.routerEnv, "router-env", nil, "KEY=VALUE in the router process's environment (GOMAXPROCS, GOGC…); repeatable")
		},
		Examples: Hello,
		Run:      func(_ context.Context, env Env, _ []string) error { return runRouterBench(env, o) },
	}
}

func runRouterBench(env Env, o routerOptions) error {
	cfg := mesh.DefaultConfig()
	if !o.inProcess {
		cfg.DataPlane = &mesh.DataPlane{Exe: env.Self, LogLevel: "error", Env: o.routerEnv}
	}
	w := env.Work
	bm, err := w.Mesh(cfg, "hello-v001")
	if err != nil {
		return err
	}
	defer bm.Stop()
	nc, err := bm.M.Connect("bench")
	if err != nil {
		return err
	}
	g, err := List(nc, "hello-v001")
	nc.Close()
	if err != nil {
		return err
	}
	var backends []string
	for _, i := range g.Instances {
		backends = append(backends, i.Address)
	}
	anchors, err := startAnchors(w, env.Self, backends)
	defer func() {
		for _, an := range anchors {
			an.Stop()
		}
	}()
	if err != nil {
		return err
	}
	routerPid := bm.M.DataPlanePid()
	if routerPid == 0 {
		routerPid = os.Getpid() // in process: the whole mesh's CPU
	}
	targets := []routerTarget{{"direct (one backend)", "http://" + backends[0] + "/", "", 0}}
	for _, an := range anchors {
		targets = append(targets, routerTarget{an.Name, fmt.Sprintf("http://127.0.0.1:%d/", an.Port), "hello", an.Pid()})
	}
	targets = append(targets, routerTarget{"redblack router", "http://" + bm.M.HTTP() + "/", "hello", routerPid})
	if o.abuse {
		rs, err := runAbuse(env, o, targets)
		if err != nil {
			return err
		}
		printAbuse(env, o, rs)
		return nil
	}
	sums, cpus, err := driveTargets(env, o, targets)
	if err != nil {
		return err
	}
	printRouterFigures(env, o, targets, anchors, sums, cpus)
	return nil
}

// startAnchors starts nginx, haproxy, Caddy and the Go forwarder in front
// of backends, each in a dir of its own under w.
func startAnchors(w *Workdir, self string, backends []string) ([]*Anchor, error) {
	forwarder := func(string, []string) (*Anchor, error) { return StartForwarder(self, backends) }
	var anchors []*Anchor
	for _, start := range []func(string, []string) (*Anchor, error){StartNginx, StartHAProxy, StartCaddy, forwarder} {
		d, err := os.MkdirTemp(w.Dir, "anchor-")
		if err != nil {
			return anchors, err
		}
		an, err := start(d, backends)
		if err != nil {
			return anchors, err
		}
		anchors = append(anchors, an)
	}
	return anchors, nil
}

// driveTargets runs the wrk rounds through every target, interleaved, and
// then the fixed rate through each proxy, reading its CPU.
func driveTargets(env Env, o routerOptions, targets []routerTarget) (map[string]*WrkResult, map[string]CPUResult, error) {
	sums := map[string]*WrkResult{}
	cpus := map[string]CPUResult{}
	for r := 0; r < o.rounds; r++ {
		for _, t := range targets {
			env.Progress(fmt.Sprintf("round %d of %d: wrk through %s", r+1, o.rounds, t.name))
			l, err := Wrk(t.name, t.url, t.host, o.conns, o.dur)
			if err != nil {
				return nil, nil, err
			}
			s := sums[t.name]
			if s == nil {
				s = &WrkResult{Target: t.name}
				sums[t.name] = s
			}
			s.RPS += l.RPS / float64(o.rounds)
			s.P50 += l.P50 / time.Duration(o.rounds)
			s.P99 += l.P99 / time.Duration(o.rounds)
			s.Requests += l.Requests
			s.Errors += l.Errors
		}
	}
	for _, t := range targets {
		if t.pid == 0 {
			continue
		}
		env.Progress(fmt.Sprintf("%d requests/s through %s for %s: its CPU", o.rate, t.name, o.dur))
		c, err := CPUPerRequest(t.pid, t.url, t.host, o.rate, 16, o.dur)
		if err != nil {
			return nil, nil, err
		}
		cpus[t.name] = c
	}
	return sums, cpus, nil
}

// printRouterFigures prints every target's figures, and as ratios to nginx.
func printRouterFigures(env Env, o routerOptions, targets []routerTarget, anchors []*Anchor, sums map[string]*WrkResult, cpus map[string]CPUResult) {
	ref, refCPU := sums["nginx"], cpus["nginx"]
	where := "the router as its own process (as under up)"
	if len(o.routerEnv) > 0 {
		where += " with " + strings.Join(o.routerEnv, " ")
	}
	if o.inProcess {
		where = "the router in this process (its CPU is the whole mesh's)"
	}
	fmt.Fprintf(env.Out, "wrk -t2 -c%d -d%s, %d round(s) interleaved, mean per round; then %d requests/s for %s with hey -c16, CPU from /proc; 3 hello backends; %s\n",
		o.conns, o.dur, o.rounds, o.rate, o.dur, where)
	tab := table(env.Out)
	row(tab, "target", "rps", "p50", "p99", "errors", "CPU/request", "rps/nginx", "p99/nginx", "CPU/req/nginx")
	for _, t := range targets {
		s := sums[t.name]
		cpu, cpuRatio := "-", "-"
		if c, ok := cpus[t.name]; ok {
			cpu = fmt.Sprintf("%.1fµs", float64(c.PerRequest)/float64(time.Microsecond))
			cpuRatio = fmt.Sprintf("%.2f", float64(c.PerRequest)/float64(refCPU.PerRequest))
			s.Errors += c.Errors
		}
		row(tab, t.name, fmt.Sprintf("%.0f", s.RPS), s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond), s.Errors, cpu,
			fmt.Sprintf("%.2f", s.RPS/ref.RPS), fmt.Sprintf("%.2f", float64(s.P99)/float64(ref.P99)), cpuRatio)
	}
	tab.Flush()
	best := ref // the best of nginx and haproxy
	if h := sums["haproxy"]; h.RPS > best.RPS {
		best = h
	}
	rb := sums["redblack router"]
	fmt.Fprintf(env.Out, "redblack against the best of nginx and haproxy (%s): %.2f× its requests/s, p99 %.2f× its p99; CPU per request %.2f× nginx's\n",
		best.Target, rb.RPS/best.RPS, float64(rb.P99)/float64(best.P99), float64(cpus["redblack router"].PerRequest)/float64(refCPU.PerRequest))
	floor := anchors[len(anchors)-1]
	fmt.Fprintf(env.Out, "the Go floor (%s, a goroutine per connection copying bytes): CPU per request %.2f× nginx's; redblack's is %.2f× the floor's\n",
		floor.Name, float64(cpus[floor.Name].PerRequest)/float64(refCPU.PerRequest), float64(cpus["redblack router"].PerRequest)/float64(cpus[floor.Name].PerRequest))
	if o.configs {
		for _, an := range anchors {
			fmt.Fprintf(env.Out, "\n# %s\n%s", an.Name, an.Config)
		}
	}
}

// forwarderBench is `bench forwarder`, the Go floor bench router starts as
// a process of its own.
func forwarderBench() Entry {
	var listen string
	return Entry{
		Name:    "forwarder BACKEND...",
		Short:   "copy bytes between each connection on --listen and one of BACKEND (host:port), round robin: bench router's Go floor",
		Hidden:  true,
		MinArgs: 1,
		Flags:   func(f *pflag.FlagSet) { f.StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on") },
		Run: func(_ context.Context, _ Env, backends []string) error {
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			return Forward(l, backends)
		},
	}
}

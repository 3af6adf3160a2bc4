package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/topology"
)

// SwitchResult is what the switch bench measured.
type SwitchResult struct {
	Requests, Failed int64
	Switches, Kills  int
	Duration         time.Duration
	// WriteToServe is, per switch, from the routes write to the first
	// response from the new group seen by the load.
	WriteToServe Latencies
}

// SwitchRun drives load through the router for switches switches one
// interval apart, killing an instance of the active group kills times.
func SwitchRun(bm *Mesh, switches, kills, workers int, interval time.Duration) (SwitchResult, error) {
	var mu sync.Mutex
	target, firstSeen := "", time.Time{}
	load := StartLoad(bm.M.HTTP(), "hello", workers, func(version string, at time.Time) {
		mu.Lock()
		if version == target && firstSeen.IsZero() {
			firstSeen = at
		}
		mu.Unlock()
	}, nil)
	defer load.Stop()
	nc, err := bm.M.Connect("switch-bench")
	if err != nil {
		return SwitchResult{}, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	kv, err := bm.JS.KeyValue(ctx, topology.BucketRoutes)
	if err != nil {
		return SwitchResult{}, err
	}
	r := SwitchResult{}
	var lat []time.Duration
	start := time.Now()
	killEvery := max(switches/max(kills, 1), 1)
	for i := range switches {
		tick := time.Now()
		group := []string{"hello-v002", "hello-v001"}[i%2]
		mu.Lock()
		target, firstSeen = group[len(group)-4:], time.Time{}
		mu.Unlock()
		if err := bm.Switch(group); err != nil {
			return r, err
		}
		r.Switches++
		route, _, err := routes.Get(ctx, kv, "hello")
		if err != nil {
			return r, err
		}
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			mu.Lock()
			seen := firstSeen
			mu.Unlock()
			if !seen.IsZero() {
				lat = append(lat, max(seen.Sub(route.Changed), 0))
				break
			}
		}
		if r.Kills < kills && i%killEvery == killEvery/2 {
			if g, err := List(nc, group); err == nil && len(g.Instances) > 0 {
				if syscall.Kill(g.Instances[0].PID, syscall.SIGKILL) == nil {
					r.Kills++
				}
				// a switch back to this group is refused (traffic guard)
				// until the replacement is up
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if g2, err := List(nc, group); err == nil && g2.Up() >= len(g.Instances) && g2.Instances[0].ID != g.Instances[0].ID {
						break
					}
				}
			}
		}
		time.Sleep(time.Until(tick.Add(interval)))
	}
	ok, failed, _ := load.Stop()
	r.Duration = time.Since(start)
	r.Requests, r.Failed = ok+failed, failed
	if len(lat) > 0 {
		r.WriteToServe = summarise(lat)
	}
	return r, nil
}

// switchBench is `bench switch`.
func switchBench() Entry {
	var switches, kills, workers, upKills int
	var every, upDown time.Duration
	return Entry{
		Name:  "switch",
		Short: "load through the router across switches and instance kills: failed requests, routes write → serving",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&upKills, "up-kills", 3, "then run `redblack up` as a process under the same load and SIGKILL it this many times (0: none)")
			f.DurationVar(&upDown, "up-down", time.Second, "how long up stays dead at each kill")
			f.IntVar(&switches, "switches", 20, "switches")
			f.IntVar(&kills, "kills", 3, "instances SIGKILLed during the run")
			f.IntVar(&workers, "workers", 8, "concurrent load workers")
			f.DurationVar(&every, "every", 1100*time.Millisecond, "time between switches")
		},
		Examples: Hello,
		Run: func(ctx context.Context, env Env, _ []string) error {
			w := env.Work
			bm, err := w.Mesh(mesh.DefaultConfig(), "hello-v001", "hello-v002")
			if err != nil {
				return err
			}
			r, err := SwitchRun(bm, switches, kills, workers, every)
			bm.Stop()
			if err != nil {
				return err
			}
			tab := table(env.Out)
			defer tab.Flush()
			row(tab, "figure", "measured", "target")
			row(tab, fmt.Sprintf("load: %d workers for %s, %d switches, %d kills", workers, r.Duration.Round(time.Second), r.Switches, r.Kills),
				fmt.Sprintf("%d requests", r.Requests), "≥ 20s, 20 switches, 3 kills")
			row(tab, "failed requests", r.Failed, "0")
			row(tab, fmt.Sprintf("routes write → new group serving, p50 / p99 (n=%d)", r.WriteToServe.N),
				fmt.Sprintf("%s / %s", r.WriteToServe.P50.Round(time.Microsecond), r.WriteToServe.P99.Round(time.Microsecond)), "p99 < 50ms")
			if upKills == 0 {
				return nil
			}
			// the same load against `redblack up` as a process, SIGKILLed;
			// its own dir, so its instances are its own hello's
			uw, err := NewWorkdir(false)
			if err != nil {
				return err
			}
			defer uw.Close()
			k, err := UpKills(ctx, UpKillOptions{Redblack: env.Self, Hello: uw.Hello, Dir: uw.Dir, Kills: upKills, Down: upDown, Workers: workers, Progress: env.Progress})
			if err != nil {
				return err
			}
			stale := make([]string, len(k.Stale))
			for i, s := range k.Stale {
				stale[i] = fmt.Sprintf("%.1fs", s)
			}
			row(tab, fmt.Sprintf("`redblack up` SIGKILLed and started again, dead %s each time, under %d workers", upDown, workers),
				fmt.Sprintf("%d kills, %d requests", k.Kills, k.Requests), "3 kills")
			row(tab, "failed requests while up was killed and restarted", k.Failed, "0")
			row(tab, "data plane pid: first start → each restart (adopted)", fmt.Sprintf("%v (%d of %d adopted)", k.Pids, k.Adopted, k.Kills), "unchanged")
			row(tab, "the router's /healthz while up was dead: tables stale for", strings.Join(stale, " "), "said")
			return nil
		},
	}
}

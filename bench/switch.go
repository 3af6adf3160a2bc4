package bench

import (
	"context"
	"sync"
	"syscall"
	"time"

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

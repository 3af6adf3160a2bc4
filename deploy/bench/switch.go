package bench

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
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
	url := "http://" + bm.M.HTTP() + "/"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var okN, failed atomic.Int64
	var mu sync.Mutex
	target, firstSeen := "", time.Time{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = "hello"
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				okN.Add(1)
				now := time.Now()
				mu.Lock()
				if resp.Header.Get("X-Version") == target && firstSeen.IsZero() {
					firstSeen = now
				}
				mu.Unlock()
			}
		}()
	}
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
			close(stop)
			wg.Wait()
			return r, err
		}
		r.Switches++
		route, _, err := routes.Get(ctx, kv, "hello")
		if err != nil {
			close(stop)
			wg.Wait()
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
	close(stop)
	wg.Wait()
	r.Duration = time.Since(start)
	r.Requests, r.Failed = okN.Load()+failed.Load(), failed.Load()
	if len(lat) > 0 {
		r.WriteToServe = summarise(lat)
	}
	return r, nil
}

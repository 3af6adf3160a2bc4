package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/shared/procfs"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// UpKillOptions configure UpKills.
type UpKillOptions struct {
	// Redblack and Hello are the binaries: `redblack up` is the process
	// killed, hello the application it serves.
	Redblack, Hello, Dir string
	// Kills is how many times `redblack up` is SIGKILLed and started again.
	Kills int
	// Down is how long up stays dead each time (default 1 s).
	Down time.Duration
	// Workers is the load's concurrency (default 4).
	Workers  int
	Progress func(string)
}

// UpKillResult is what UpKills saw.
type UpKillResult struct {
	Kills            int
	Requests, Failed int64
	// Pids are the data plane's pid on each ready line: the first start's,
	// then each restart's.
	Pids []int
	// Adopted counts the restarts whose ready line says the data plane was
	// adopted.
	Adopted int
	// Stale is, per kill, how stale the router's /healthz said its tables
	// were just before up came back.
	Stale []float64
	// Recoveries are the times from each start to its ready line.
	Recoveries []time.Duration
	// LeftRunning: the data plane still ran after up's last, graceful stop
	// (it should stop with up).
	LeftRunning bool
}

// UpKills runs `redblack up` as a process with hello released and steady
// load through its router, then SIGKILLs up Kills times, each time leaving
// it dead for Down and starting it again on the same data and ports: the
// router process outlives up and is adopted, and the load sees no failure.
func UpKills(ctx context.Context, o UpKillOptions) (UpKillResult, error) {
	var res UpKillResult
	if o.Down <= 0 {
		o.Down = time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	progress := func(f string, a ...any) {
		if o.Progress != nil {
			o.Progress(fmt.Sprintf(f, a...))
		}
	}
	var addrs [3]string
	for i := range addrs {
		p, err := freePort()
		if err != nil {
			return res, err
		}
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	natsAddr, httpAddr, adminAddr := addrs[0], addrs[1], addrs[2]
	data := filepath.Join(o.Dir, "data")
	logf, err := os.Create(filepath.Join(o.Dir, "up.log"))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	start := func() (*up, error) {
		t0 := time.Now()
		u, err := startUp(o.Redblack, data, natsAddr, httpAddr, logf, "--router-admin", adminAddr)
		if err != nil {
			return nil, err
		}
		res.Recoveries = append(res.Recoveries, time.Since(t0))
		pid, how, err := dataPlaneOf(u.ready)
		if err != nil {
			u.kill()
			return nil, err
		}
		res.Pids = append(res.Pids, pid)
		if how == "adopted" {
			res.Adopted++
		}
		return u, nil
	}
	u, err := start()
	if err != nil {
		return res, err
	}
	defer func() {
		if u != nil {
			u.stop()
		}
		// a data plane or instance left by a failed run
		killDataPlanes(o.Redblack, res.Pids)
		testkit.KillAll(o.Hello)
	}()
	nc, err := nats.Connect("nats://"+natsAddr, nats.UserCredentials(filepath.Join(data, "creds", "admin.creds")), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	services, err1 := js.KeyValue(c, topology.BucketServices)
	relKV, err2 := js.KeyValue(c, topology.BucketReleases)
	cancel()
	if err1 != nil || err2 != nil {
		return res, fmt.Errorf("buckets: %v %v", err1, err2)
	}
	svc := crashSpec(o.Hello)
	svc.Strategy.Bake = spec.Bake{Duration: spec.Duration(time.Second)}
	if _, err := spec.Apply(ctx, services, svc); err != nil {
		return res, err
	}
	c, cancel = context.WithTimeout(ctx, 10*time.Second)
	id, err := requestHello(c, js, "upkill", o.Hello, "v1")
	cancel()
	if err != nil {
		return res, err
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, _, err := release.Store{KV: relKV}.Get(c, id)
		cancel()
		if err == nil && r.Phase == release.PhaseCompleted {
			break
		}
		if err == nil && r.Phase.Final() || time.Now().After(deadline) {
			return res, fmt.Errorf("v1 did not complete: %s", r.Phase)
		}
	}
	progress("hello v1 serves; load: %d workers through %s; the data plane is pid %d", o.Workers, httpAddr, res.Pids[0])
	load := StartLoad(httpAddr, "hello", o.Workers, nil, nil)
	time.Sleep(time.Second) // load before the first kill is part of what is measured
	for i := range o.Kills {
		u.kill()
		u = nil
		res.Kills++
		time.Sleep(o.Down) // up stays dead this long: what is measured
		h, err := routerHealth(adminAddr)
		if err != nil {
			_, failed, _ := load.Stop()
			res.Failed = failed
			return res, fmt.Errorf("kill %d: the data plane's /healthz: %w", i+1, err)
		}
		res.Stale = append(res.Stale, h.StaleSeconds)
		if u, err = start(); err != nil {
			load.Stop()
			return res, err
		}
		progress("kill %d: up dead %s, the router said %q with tables %.1fs stale; up ready again in %s, data plane pid %d",
			i+1, o.Down, h.Status, h.StaleSeconds, res.Recoveries[len(res.Recoveries)-1].Round(time.Millisecond), res.Pids[len(res.Pids)-1])
		time.Sleep(time.Second) // load after the restart is part of what is measured
	}
	ok, failed, _ := load.Stop()
	res.Requests, res.Failed = ok+failed, failed
	u.stop()
	u = nil
	res.LeftRunning = runs(o.Redblack, res.Pids[len(res.Pids)-1])
	return res, nil
}

// dataPlaneOf reads the data plane's pid and how it came ("started" or
// "adopted") from up's ready line (router=PID/HOW/HEALTHZ).
func dataPlaneOf(ready string) (int, string, error) {
	for _, f := range strings.Fields(ready) {
		if v, ok := strings.CutPrefix(f, "router="); ok {
			parts := strings.SplitN(v, "/", 3)
			pid, err := strconv.Atoi(parts[0])
			if err != nil || len(parts) < 2 {
				return 0, "", fmt.Errorf("ready line: router=%s: no data plane process", v)
			}
			return pid, parts[1], nil
		}
	}
	return 0, "", fmt.Errorf("ready line without router=: %q", ready)
}

// killDataPlanes SIGKILLs the data planes of pids still running redblack:
// an up killed and not started again leaves its router serving.
func killDataPlanes(redblack string, pids []int) {
	for _, pid := range pids {
		if runs(redblack, pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// runs reports whether pid is a live process of the binary exe.
func runs(exe string, pid int) bool {
	path, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || path != exe {
		return false
	}
	state, _, err := procfs.Stat(pid)
	return err == nil && state != 'Z'
}

// routerHealth reads a router's /healthz.
func routerHealth(admin string) (router.Health, error) {
	var h router.Health
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + admin + "/healthz")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h, fmt.Errorf("status %d", resp.StatusCode)
	}
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

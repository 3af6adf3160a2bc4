package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/procfs"
	"github.com/redblack/redblack/shared/svcmain"
	"github.com/redblack/redblack/shared/testkit"
)

// TestDataPlaneOutlivesUp: `redblack up` runs its router as its own
// process; SIGKILLed three times under load, each time dead for a second,
// up is started again on the same data and adopts that very process: the
// load sees no failed request, the data plane's pid never changes, and its
// /healthz says its tables are stale while up is dead.
func TestDataPlaneOutlivesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs redblack up as a process, three times killed")
	}
	dir := t.TempDir()
	bin := buildRedblack(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := bench.UpKills(ctx, bench.UpKillOptions{Redblack: bin, Hello: hello, Dir: dir, Kills: 3, Down: time.Second, Workers: 4,
		Progress: func(s string) { t.Log(s) }})
	if err != nil {
		if b, rerr := os.ReadFile(filepath.Join(dir, "up.log")); rerr == nil {
			t.Logf("up.log:\n%s", b)
		}
		t.Fatal(err)
	}
	t.Logf("%d kills; %d requests, %d failed; data plane pids %v, %d adopted; stale %v; ready in %v", res.Kills, res.Requests, res.Failed, res.Pids, res.Adopted, res.Stale, res.Recoveries)
	if res.Kills != 3 || res.Adopted != 3 || len(res.Pids) != 4 {
		t.Fatalf("%d kills, %d adoptions, pids %v", res.Kills, res.Adopted, res.Pids)
	}
	for _, pid := range res.Pids[1:] {
		if pid != res.Pids[0] {
			t.Errorf("the data plane's pid changed: %v", res.Pids)
		}
	}
	if res.Failed != 0 || res.Requests < 1000 {
		t.Errorf("%d of %d requests failed while up was killed", res.Failed, res.Requests)
	}
	for i, s := range res.Stale {
		// up was dead for a second: the router must say so
		if s < 0.5 {
			t.Errorf("kill %d: /healthz said the tables were %.2fs stale after a second without NATS", i+1, s)
		}
	}
	if res.LeftRunning {
		t.Error("the data plane still runs after up's graceful stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "dataplane.json")); !os.IsNotExist(err) {
		t.Errorf("up stopped gracefully but left the data plane's state: %v", err)
	}
}

// TestDataPlaneExitsWithoutItsDataDir: a data plane left running by its up
// (as after a SIGKILL) whose data directory is then deleted stops on its
// own, draining, instead of serving stale tables with its ports open for
// ever (issue 28, item 6).
func TestDataPlaneExitsWithoutItsDataDir(t *testing.T) {
	dir := t.TempDir()
	bin := buildRedblack(t, dir)
	t.Cleanup(func() { testkit.KillAll(bin) })
	data := filepath.Join(dir, "data")
	cfg := mesh.DefaultConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = data, "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataPlane = &mesh.DataPlane{Exe: bin, LogLevel: "error"}
	cfg.KeepInstances = true // the data plane is left running, as a killed up leaves it
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	pid := m.DataPlanePid()
	if pid == 0 {
		t.Fatal("no data plane process")
	}
	m.Stop()
	alive := func() bool { _, err := procfs.FDTargets(pid); return err == nil }
	// left running: it must not stop while its data directory is there
	time.Sleep(2 * svcmain.OwnerCheck) // a span the data plane must live through, not a condition
	if !alive() {
		t.Fatal("the data plane stopped while its data directory was still there")
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	defer func() {
		t.Logf("the data plane stopped %s after its data directory was deleted", time.Since(deleted).Round(time.Millisecond))
	}()
	for deadline := time.Now().Add(10*svcmain.OwnerCheck + 10*time.Second); alive(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the data plane (pid %d) still runs %s after its data directory was deleted", pid, 10*svcmain.OwnerCheck+10*time.Second)
		}
	}
}

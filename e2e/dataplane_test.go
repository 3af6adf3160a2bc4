package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redblack/redblack/bench"
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

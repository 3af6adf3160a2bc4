package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redblack/redblack/bench"
)

// crashKills bounds the crash harness in `go test` (CI); `redblack bench
// crash --kills N` runs longer ones.
var crashKills = 12

// TestCrashHarness: real releases of every kind (healthy, bake failure,
// canary failure, rollback by hand, abort, switch by hand) under load, with
// `redblack up` SIGKILLed at a random point of each and started again on
// the same data; after each, every invariant holds (the harness's list:
// ended within its deadlines, lock free, one group with all the traffic and
// instances up, nothing left over or unowned, one terminal event).
func TestCrashHarness(t *testing.T) {
	dir := t.TempDir()
	bin := buildRedblack(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	res, err := bench.Crash(ctx, bench.CrashOptions{Redblack: bin, Hello: hello, Dir: dir, Kills: crashKills, Seed: 1, Progress: func(s string) { t.Log(s) }})
	if err != nil {
		if b, rerr := os.ReadFile(filepath.Join(dir, "up.log")); rerr == nil && len(b) > 4000 {
			t.Logf("up.log (end):\n%s", b[len(b)-4000:])
		}
		t.Fatal(err)
	}
	t.Logf("%d kills in phases %v; outcomes %v; %d checks; requests %d, failed %d while up ran (%d outside every bad release's window), %d while it was down",
		res.Kills, res.KilledIn, res.Outcomes, res.Checks, res.Requests, res.Failed, res.Unexplained, res.FailedWhileDown)
	if res.Kills != crashKills || res.Checks != crashKills {
		t.Fatalf("%d kills, %d checks", res.Kills, res.Checks)
	}
	for _, v := range res.Violations {
		t.Error(v)
	}
}

// buildRedblack builds the redblack binary into dir: the tests that run
// `redblack up` as a process.
func buildRedblack(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "redblack")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/redblack").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

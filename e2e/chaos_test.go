package e2e_test

import (
	"testing"
	"time"

	"github.com/redblack/redblack/bench"
)

// TestChaosMonkeyUnderLoad: hello with 3 instances under steady load through
// the router; the monkey, unleashed in its fast mode (a mean of 1 s, at
// least 2 s between kills), kills for 30 s. Not one request fails, every
// victim is replaced, and every kill is in the audit trail.
func TestChaosMonkeyUnderLoad(t *testing.T) {
	r, err := bench.ChaosRun(t.TempDir(), hello, 30*time.Second, time.Second, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if r.Kills < 8 {
		t.Errorf("%d kills in 30 s; want about one every 2 s", r.Kills)
	}
	if r.Failed != 0 {
		t.Errorf("%d requests failed", r.Failed)
	}
	if len(r.Unreplaced) != 0 {
		t.Errorf("not replaced: %v", r.Unreplaced)
	}
	if r.AuditTerminated != r.Kills {
		t.Errorf("%d kills, %d in the FLEET stream", r.Kills, r.AuditTerminated)
	}
}

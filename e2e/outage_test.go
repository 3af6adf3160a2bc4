package e2e_test

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/testkit"
)

// TestServiceStartedBeforeNATSWaitsForIt: a service process started while
// no NATS server listens logs each attempt and keeps trying; once the
// server comes up on that address, it connects with its creds and
// registers. It does not exit.
func TestServiceStartedBeforeNATSWaitsForIt(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "chaos")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/redblack/redblack/services/chaos/cmd/chaos").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	a, err := auth.Open(filepath.Join(dir, "creds")) // the mesh opens the same authority
	if err != nil {
		t.Fatal(err)
	}
	creds, err := a.Service("chaos")
	if err != nil {
		t.Fatal(err)
	}
	path, err := a.WriteCreds("chaos", creds)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var logs testkit.SyncBuffer
	proc := testkit.StartProcess(t, &logs, bin, "--server", "nats://"+addr, "--creds", path, "--log-level", "warn")
	for deadline := time.Now().Add(15 * time.Second); strings.Count(logs.String(), "NATS unreachable") < 3; time.Sleep(50 * time.Millisecond) {
		proc.Alive(t, "the service, without NATS,", &logs)
		if time.Now().After(deadline) {
			t.Fatalf("no attempts logged:\n%s", logs.String())
		}
	}
	cfg := testConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = dir, addr, "127.0.0.1:0"
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop() })
	nc, err := m.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	// the mesh's chaos and the waiting one both answer
	awaitCopies(t, nc, "redblack-chaos", 2, proc, &logs)
}

package cli

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/discovery/lb"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/testkit"
)

const storeSpecYAML = `name: store
owner: team-store
capacity: 3
health: {path: /healthz, interval: 200ms, healthy_threshold: 1, unhealthy_threshold: 2}
artifact:
  command: [STORE]
strategy:
  type: rolling
  rolling: {max_unavailable: 1, health_gate: 1s, verify: {duration: 3s}}
  canary: {capacity: 1, duration: 3s, interval: 500ms, min_samples: 20, metrics: [{name: error_rate, critical: true, tolerance: 0.001}]}
`

// TestUpKilledMidRoll: `redblack up` is SIGKILLed while store rolls
// v1 → v2, once the roll's second batch has started. The instances
// outlive it; the next up on the same data (and the same NATS port, so
// the callers reconnect) resumes the roll from the release record, and it
// completes with every slot on v2, each once. The writes go straight to
// the slots through a discovery client of the test's own: every one
// acknowledged reads back with its last value.
func TestUpKilledMidRoll(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "redblack")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/redblack").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	store, err := testkit.Build(t.TempDir(), testkit.StorePackage, "store")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testkit.KillAll(bin); testkit.KillAll(store) })
	data := t.TempDir()
	t.Setenv("REDBLACK_DATA", data)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := l.Addr().String()
	l.Close()
	url, cmd := startUp(t, bin, data, natsAddr)
	if code, out, errs := run(t, url, "service", "apply", "-f", writeFile(t, strings.Replace(storeSpecYAML, "STORE", store, 1))); code != 0 {
		t.Fatalf("apply: %q %q", out, errs)
	}
	if code, out, errs := run(t, url, "release", "store", "--version", "v1", "--wait"); code != 0 {
		t.Fatalf("release v1: %d %q %q", code, out, errs)
	}

	// the writes come through a discovery client with the creds of an
	// instance of a service "writer" that calls store (its samples gate
	// the batches; the admin may publish none)
	authority, err := auth.Open(filepath.Join(data, "creds"))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := authority.Caller("writer", []string{"store"})
	if err != nil {
		t.Fatal(err)
	}
	copts, err := natsx.CredsOptions(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, append(copts, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := testkit.Context(t, 3*time.Minute)
	client, err := lb.Start(ctx, nc, lb.Config{Caller: "writer", Services: []string{"store"}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	w := bench.StartKeyWrites(client, "store", 4, 50)
	defer w.Stop()
	if err := w.AwaitOK(100, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	admin, err := nats.Connect(url, nats.UserCredentials(filepath.Join(data, "creds", "admin.creds")))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	second := make(chan struct{})
	var once sync.Once
	sub, err := admin.Subscribe(events.RollingBatchStarted.Subject("store"), func(m *nats.Msg) {
		var b events.RollingBatch
		if ev, err := events.Decode(m.Data); err == nil && ev.DecodeData(&b) == nil && b.Batch == 2 && b.Previous == "store-v001" {
			once.Do(func() { close(second) })
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	admin.Flush()
	if code, out, errs := run(t, url, "release", "store", "--version", "v2"); code != 0 {
		t.Fatalf("release v2: %d %q %q", code, out, errs)
	}
	select {
	case <-second:
	case <-time.After(60 * time.Second):
		t.Fatal("v2's second batch never started")
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	url, _ = startUp(t, bin, data, natsAddr)
	var listed string
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		_, out, _ := run(t, url, "events", "--service", "store")
		if strings.Count(out, "release.completed") >= 2 {
			break
		}
		if strings.Contains(out, "release.rolled_back") || time.Now().After(deadline) {
			t.Fatalf("the roll did not resume to completion:\n%s", out)
		}
	}
	if err := w.AwaitOK(100, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	w.Stop()
	_, listed, _ = run(t, url, "fleet", "ls", "store")
	if !strings.Contains(listed, "store-v002") || strings.Contains(listed, "store-v001") || !strings.Contains(listed, "3/3") {
		t.Fatalf("after the resumed roll:\n%s", listed)
	}
	lost := w.Lost()
	t.Logf("%s; lost: %d", w.Summary(), len(lost))
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged writes lost: %v", len(lost), lost)
	}
}

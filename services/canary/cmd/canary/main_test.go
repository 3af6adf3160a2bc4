package main

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// TestSeparateProcess runs the canary binary against a server over
// loopback, as on a cluster: it registers, decides a request, and stops
// cleanly on SIGTERM.
func TestSeparateProcess(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "canary")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	s := testkit.Start(t)
	nc := s.Conn(t)
	ctx := testkit.Context(t, 30*time.Second)
	js, _ := jetstream.New(nc)
	kv, _ := js.KeyValue(ctx, topology.BucketServices)
	spec.Apply(ctx, kv, spec.Service{Name: "hello", Owner: "t", Capacity: 1, Artifact: spec.Artifact{Command: []string{"hello"}}})

	cmd := exec.Command(bin, "--server", s.URL, "--log-level", "warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	})
	for {
		if _, err := nc.Request("$SRV.PING.redblack-canary", nil, 200*time.Millisecond); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("canary never registered")
		}
	}
	acc, _ := nc.SubscribeSync("release.hello.accepted")
	nc.Publish("release.hello.requested", []byte(`{"version":"v1"}`))
	if _, err := acc.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no decision from the canary process: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("canary exited with %v on SIGTERM", err)
		}
		exited <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("canary did not stop on SIGTERM")
	}
}

package e2e_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// testConfig is mesh.DefaultConfig with the tests' bake latency slack
// (testkit.LatencySlack: these tests are not about latency).
func testConfig() mesh.Config {
	cfg := mesh.DefaultConfig()
	cfg.Watchdog.LatencySlack = testkit.LatencySlack
	return cfg
}

func start(t *testing.T, dir string) *mesh.Mesh {
	t.Helper()
	cfg := testConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = dir, "127.0.0.1:0", "127.0.0.1:0"
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Stop()
		// every service keeps to its permission set
		for _, v := range m.Violations() {
			t.Errorf("permission violation: %s", v)
		}
	})
	return m
}

// TestInteropOverTCP does over loopback TCP with nats.go what natscli does:
// lists the streams, finds the five micro services and their status, and
// starts a release with a bare core-NATS publish (`nats pub`).
func TestInteropOverTCP(t *testing.T) {
	m := start(t, t.TempDir())
	nc, err := nats.Connect(m.URL(), nats.UserCredentials(m.AdminCreds()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var names []string
	for n := range js.StreamNames(ctx).Name() {
		names = append(names, n)
	}
	for _, want := range []string{topology.StreamReleases, topology.StreamFleet, topology.StreamMetrics, topology.StreamAdvisories, topology.StreamDLQ} {
		if !contains(names, want) {
			t.Errorf("stream %s missing from %v", want, names)
		}
	}

	// `nats micro ls` sends $SRV.INFO and gathers the replies.
	inbox := nats.NewInbox()
	sub, _ := nc.SubscribeSync(inbox)
	nc.PublishRequest("$SRV.INFO", inbox, nil)
	found := map[string]bool{}
	allFound := func() bool {
		for _, n := range mesh.ServiceNames {
			if !found["redblack-"+n] {
				return false
			}
		}
		return true
	}
	for !allFound() {
		msg, err := sub.NextMsg(3 * time.Second)
		if err != nil {
			t.Fatalf("micro services found %v: %v", found, err)
		}
		var info struct{ Name string }
		json.Unmarshal(msg.Data, &info)
		found[info.Name] = true
	}
	for _, n := range mesh.ServiceNames {
		if !found["redblack-"+n] {
			t.Errorf("micro service redblack-%s missing", n)
		}
		resp, err := nc.Request(natsx.StatusSubject(n), nil, 2*time.Second)
		var st natsx.Status
		if err != nil || json.Unmarshal(resp.Data, &st) != nil || st.Service != n {
			t.Errorf("status of %s: %v", n, err)
		}
	}

	kv, _ := js.KeyValue(ctx, topology.BucketServices)
	if _, err := spec.Apply(ctx, kv, spec.Service{Name: "hello", Owner: "t", Capacity: 1, Artifact: spec.Artifact{Command: []string{"hello"}}}); err != nil {
		t.Fatal(err)
	}
	acc, _ := nc.SubscribeSync("release.hello.accepted")
	if err := nc.Publish("release.hello.requested", []byte(`{"version":"v2"}`)); err != nil {
		t.Fatal(err)
	}
	msg, err := acc.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("bare core publish did not start a release: %v", err)
	}
	ev, err := events.Decode(msg.Data)
	if err != nil || !strings.HasPrefix(ev.ReleaseID, "req-") {
		t.Fatalf("accepted %v %v", ev, err)
	}
}

func TestRestartKeepsEventsAndState(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := start(t, dir)
	nc, _ := m.Connect("test")
	js, _ := jetstream.New(nc)
	kv, _ := js.KeyValue(ctx, topology.BucketServices)
	spec.Apply(ctx, kv, spec.Service{Name: "hello", Owner: "t", Capacity: 1, Artifact: spec.Artifact{Command: []string{"hello"}}})
	acc, _ := nc.SubscribeSync("release.hello.accepted")
	nc.Publish("release.hello.requested", []byte(`{"version":"v2"}`))
	if _, err := acc.NextMsg(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}

	m = start(t, dir)
	nc, _ = m.Connect("test2")
	js, _ = jetstream.New(nc)
	st, _ := js.Stream(ctx, topology.StreamReleases)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("release.hello.>"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Subjects["release.hello.requested"] != 1 || info.State.Subjects["release.hello.accepted"] != 1 {
		t.Fatalf("events after restart: %v", info.State.Subjects)
	}
	kv, _ = js.KeyValue(ctx, topology.BucketServices)
	if _, err := spec.Get(ctx, kv, "hello"); err != nil {
		t.Fatalf("spec after restart: %v", err)
	}
	// the intake's durable consumer resumes where it stopped: whatever it
	// had not acked is redelivered and decided idempotently, never twice
	rel, _ := js.KeyValue(ctx, topology.BucketReleases)
	if _, err := rel.Get(ctx, "lock.hello"); err != nil {
		t.Fatalf("lock after restart: %v", err)
	}
	cons, err := js.Consumer(ctx, topology.StreamReleases, "canary-intake")
	if err != nil {
		t.Fatal(err)
	}
	for {
		ci, err := cons.Info(ctx)
		if err != nil {
			t.Fatalf("intake consumer after restart: %v", err)
		}
		if ci.NumPending == 0 && ci.NumAckPending == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("intake consumer never settled: %+v", ci)
		case <-time.After(50 * time.Millisecond):
		}
	}
	info, _ = st.Info(ctx, jetstream.WithSubjectFilter("release.hello.>"))
	if info.State.Subjects["release.hello.accepted"] != 1 {
		t.Fatalf("decisions after restart: %v", info.State.Subjects)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// answering counts the copies of a micro service that answer a ping within
// 300 ms of each other.
func answering(nc *nats.Conn, name string) int {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0
	}
	defer sub.Unsubscribe()
	if nc.PublishRequest("$SRV.PING."+name, inbox, nil) != nil {
		return 0
	}
	n := 0
	for {
		if _, err := sub.NextMsg(300 * time.Millisecond); err != nil {
			return n
		}
		n++
	}
}

// awaitCopies waits until n copies of a micro service answer, failing the
// test if p, the process of one of them, ends first or 20 s pass.
func awaitCopies(t *testing.T, nc *nats.Conn, name string, n int, p *testkit.Process, logs *testkit.SyncBuffer) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		got := answering(nc, name)
		if got >= n {
			return
		}
		p.Alive(t, name, logs)
		if time.Now().After(deadline) {
			t.Fatalf("%d copies of %s answer, want %d\n%s", got, name, n, logs.String())
		}
	}
}

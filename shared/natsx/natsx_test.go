package natsx_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/deadletter"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

func TestPublishDeduplicatesByEventID(t *testing.T) {
	s := testkit.Start(t)
	js := s.JS(t)
	ctx := testkit.Context(t, 10*time.Second)
	ev, err := events.NewWithID(events.DerivedID("rel-1", events.ReleaseAccepted, 0), "test", events.ReleaseAccepted, "hello", "rel-1", events.Accepted{Service: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := natsx.Publish(ctx, js, events.ReleaseAccepted.Subject("hello"), ev)
	if err != nil {
		t.Fatal(err)
	}
	second, err := natsx.Publish(ctx, js, events.ReleaseAccepted.Subject("hello"), ev)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !second.Duplicate || first.Sequence != second.Sequence {
		t.Fatalf("acks %+v %+v: want the second to be a duplicate of the first", first, second)
	}
	st, _ := js.Stream(ctx, topology.StreamReleases)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
}

func TestConsumeRetriesThenAcks(t *testing.T) {
	s := testkit.Start(t)
	js := s.JS(t)
	ctx := testkit.Context(t, 20*time.Second)
	var calls atomic.Int32
	done := make(chan uint64, 1)
	c, err := natsx.Consume(ctx, js, natsx.ConsumerSpec{
		Stream: topology.StreamFleet, Durable: "retry", FilterSubjects: []string{"fleet.>"},
		RetryBase: 20 * time.Millisecond,
	}, func(ctx context.Context, msg jetstream.Msg) error {
		if calls.Add(1) < 3 {
			return errors.New("transient")
		}
		md, _ := msg.Metadata()
		done <- md.NumDelivered
		return nil
	}, logging.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if _, err := js.Publish(ctx, "fleet.hello.x", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-done:
		if n != 3 {
			t.Fatalf("succeeded on delivery %d, want 3", n)
		}
	case <-ctx.Done():
		t.Fatal("handler never succeeded")
	}
	waitFor(t, ctx, func() bool {
		lag, err := c.Lag(ctx)
		return err == nil && lag.AckPending == 0 && lag.Pending == 0
	})
}

func TestPermanentAndExhaustedGoToDeadLetters(t *testing.T) {
	s := testkit.Start(t)
	js := s.JS(t)
	ctx := testkit.Context(t, 30*time.Second)
	dl, err := deadletter.Run(ctx, js, logging.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dl.Stop)
	c, err := natsx.Consume(ctx, js, natsx.ConsumerSpec{
		Stream: topology.StreamFleet, Durable: "failing", FilterSubjects: []string{"fleet.>"},
		MaxDeliver: 2, RetryBase: 10 * time.Millisecond,
	}, func(ctx context.Context, msg jetstream.Msg) error {
		if string(msg.Data()) == "poison" {
			return natsx.Permanent(errors.New("cannot parse"))
		}
		return errors.New("always fails")
	}, logging.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	js.Publish(ctx, "fleet.hello.a", []byte("poison"))
	js.Publish(ctx, "fleet.hello.b", []byte("flaky"))

	st, _ := js.Stream(ctx, topology.StreamDLQ)
	waitFor(t, ctx, func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 2
	})
	reasons := map[string]string{}
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != deadletter.Subject(topology.StreamFleet, "failing") {
			t.Fatalf("dead letter on %q", m.Subject)
		}
		reasons[string(m.Data)] = m.Header.Get(deadletter.HeaderReason)
	}
	if reasons["poison"] == "" || reasons["flaky"] == "" {
		t.Fatalf("dead letters %v: want poison and flaky with reasons", reasons)
	}
}

func TestMicroStatusAndStats(t *testing.T) {
	s := testkit.Start(t)
	nc := s.Conn(t)
	js, _ := jetstream.New(nc)
	ctx := testkit.Context(t, 10*time.Second)
	c, err := natsx.Consume(ctx, js, natsx.ConsumerSpec{Stream: topology.StreamFleet, Durable: "lagging", FilterSubjects: []string{"fleet.>"}},
		func(ctx context.Context, msg jetstream.Msg) error { return nil }, logging.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	svc, err := natsx.AddMicro(nc, natsx.MicroConfig{
		Name: "probe", Version: "0.1.0",
		Status:    func() any { return map[string]string{"state": "ok"} },
		Consumers: func() []*natsx.Consumer { return []*natsx.Consumer{c} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	client := s.Conn(t)
	resp, err := client.Request(natsx.StatusSubject("probe"), nil, 2*time.Second)
	if err != nil || string(resp.Data) != `{"state":"ok"}` {
		t.Fatalf("status = %v, %v", resp, err)
	}
	resp, err = client.Request("$SRV.STATS.redblack-probe", nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Endpoints []struct {
			Data natsx.Stats `json:"data"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(resp.Data, &stats); err != nil || len(stats.Endpoints) != 1 || len(stats.Endpoints[0].Data.Consumers) != 1 ||
		stats.Endpoints[0].Data.Consumers[0].Consumer != "lagging" {
		t.Fatalf("stats %s, %v", resp.Data, err)
	}
}

func TestEmbeddedRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	start := func() *natsx.Embedded {
		e, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: dir, Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	ctx := testkit.Context(t, 20*time.Second)
	e := start()
	nc, err := e.Connect("first", nil)
	if err != nil {
		e.Shutdown()
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if err := topology.Ensure(ctx, js, topology.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	kv, _ := js.KeyValue(ctx, topology.BucketServices)
	kv.Put(ctx, "hello", []byte("spec"))
	js.Publish(ctx, "release.hello.requested", []byte("{}"))
	nc.Drain()
	e.Shutdown()

	e = start()
	t.Cleanup(e.Shutdown)
	nc, err = e.Connect("second", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ = jetstream.New(nc)
	kv, err = js.KeyValue(ctx, topology.BucketServices)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := kv.Get(ctx, "hello"); err != nil || string(v.Value()) != "spec" {
		t.Fatalf("kv after restart: %v %v", v, err)
	}
	st, _ := js.Stream(ctx, topology.StreamReleases)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("RELEASES after restart: %d msgs", info.State.Msgs)
	}
}

func TestBackoff(t *testing.T) {
	base, max := 100*time.Millisecond, time.Second
	for n, want := range map[uint64]time.Duration{1: base, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 5: time.Second, 50: time.Second} {
		if got := natsx.Backoff(n, base, max); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestConfigFromEnvAndOptions(t *testing.T) {
	c := natsx.DefaultConfig()
	env := map[string]string{"REDBLACK_SERVER": "nats://10.0.0.1:4222", "REDBLACK_CREDS": "/x.creds"}
	c.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if c.URL != "nats://10.0.0.1:4222" || c.Creds != "/x.creds" {
		t.Fatalf("FromEnv: %+v", c)
	}
	if _, err := natsx.Connect(natsx.Config{URL: "nats://127.0.0.1:1"}); err == nil {
		t.Fatal("connect to a closed port succeeded")
	}
}

func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met before the deadline")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestReadAll: every message under the filter comes, in order, over
// several batches; a filter nothing matches ends at once with none; a
// stream that does not exist is an error, not an empty read.
func TestReadAll(t *testing.T) {
	s := testkit.Start(t)
	js := s.JS(t)
	ctx := testkit.Context(t, 20*time.Second)
	const n = 1234
	for i := range n {
		subj := "fleet.a"
		if i%2 == 1 {
			subj = "fleet.b"
		}
		if _, err := js.Publish(ctx, subj, []byte{byte(i), byte(i >> 8)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []int
	if err := natsx.ReadAll(ctx, js, topology.StreamFleet, []string{"fleet.a"}, func(m jetstream.Msg) {
		got = append(got, int(m.Data()[0])|int(m.Data()[1])<<8)
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != n/2 {
		t.Fatalf("read %d messages of fleet.a, want %d", len(got), n/2)
	}
	for i, v := range got {
		if v != 2*i {
			t.Fatalf("message %d is %d, want %d", i, v, 2*i)
		}
	}
	calls := 0
	start := time.Now()
	if err := natsx.ReadAll(ctx, js, topology.StreamFleet, []string{"fleet.none"}, func(jetstream.Msg) { calls++ }); err != nil || calls != 0 {
		t.Fatalf("nothing under the filter: %d calls, %v", calls, err)
	}
	t.Logf("an empty read ended after %v", time.Since(start))
	if err := natsx.ReadAll(ctx, js, "NOSUCH", nil, func(jetstream.Msg) {}); err == nil {
		t.Fatal("a stream that does not exist read as empty")
	}
}

// TestKeysLeavesTheFiltersAlone: nats.go writes the bucket's prefix into
// the filter slice it is given; Keys gives it a copy, so neither the
// caller's slice nor Keys' own next attempt (after a node's loss) lists
// "$KV.<bucket>.<filter>", an invalid key.
func TestKeysLeavesTheFiltersAlone(t *testing.T) {
	s := testkit.Start(t)
	js := s.JS(t)
	ctx := testkit.Context(t, 10*time.Second)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "keys"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a.1", "a.2", "b.1"} {
		if _, err := kv.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	filters := []string{"a.*"}
	for range 2 {
		keys, err := natsx.Keys(ctx, kv, filters...)
		if err != nil || len(keys) != 2 {
			t.Fatalf("keys %v, %v; want a.1 and a.2", keys, err)
		}
	}
	if filters[0] != "a.*" {
		t.Fatalf("the caller's filter became %q", filters[0])
	}
}

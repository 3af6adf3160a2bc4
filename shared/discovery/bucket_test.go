package discovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// Up counts the up entries of one group; when the bucket cannot be read
// whole it says so, and never answers "none up".
func TestUpIsUnknownWhenUnread(t *testing.T) {
	srv := testkit.Start(t)
	ctx := testkit.Context(t, 10*time.Second)
	kv, err := srv.JS(t).KeyValue(ctx, topology.BucketInstances)
	if err != nil {
		t.Fatal(err)
	}
	for i, state := range []string{discovery.StateUp, discovery.StateUp, discovery.StateDown} {
		e := discovery.Entry{ID: string(rune('a' + i)), Service: "hello", Group: "hello-v001", Address: "127.0.0.1:1", State: state, Started: time.Now()}
		if _, err := kv.Put(ctx, discovery.Key("hello", "hello-v001", e.ID), e.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := discovery.Up(ctx, kv, "hello", "hello-v001")
	if err != nil || len(ids) != 2 {
		t.Fatalf("up = %v, %v; want a and b", ids, err)
	}
	if ids, err := discovery.Up(ctx, kv, "hello", "hello-v002"); err != nil || len(ids) != 0 {
		t.Fatalf("a group with no entry: %v, %v; want none, no error", ids, err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if ids, err := discovery.Up(done, kv, "hello", "hello-v001"); err == nil {
		t.Fatalf("an unread bucket answered %v, no error", ids)
	}
	// the whole server gone: unknown, not none
	srv.Shutdown()
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	if ids, err := discovery.Up(sctx, kv, "hello", "hello-v001"); err == nil {
		t.Fatalf("with NATS down Up answered %v, no error", ids)
	}
}

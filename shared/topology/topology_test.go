package topology_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

func TestEnsureIsIdempotentAndAuditLogIsProtected(t *testing.T) {
	s := testkit.Start(t) // Ensure once
	js := s.JS(t)
	ctx := testkit.Context(t, 10*time.Second)
	if err := topology.Ensure(ctx, js, topology.DefaultOptions()); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	st, err := js.Stream(ctx, topology.StreamReleases)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	c := info.Config
	if c.Storage != jetstream.FileStorage || c.MaxAge != 90*24*time.Hour || c.Duplicates != 10*time.Minute || !c.DenyDelete || !c.DenyPurge {
		t.Fatalf("RELEASES config %+v", c)
	}
	ack, err := js.Publish(ctx, "release.hello.requested", []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err == nil {
		t.Fatal("purge of the audit log succeeded")
	}
	if err := st.DeleteMsg(ctx, ack.Sequence); err == nil {
		t.Fatal("delete from the audit log succeeded")
	}
	for _, b := range []string{topology.BucketServices, topology.BucketReleases, topology.BucketRoutes, topology.BucketInstances} {
		if _, err := js.KeyValue(ctx, b); err != nil {
			t.Errorf("bucket %s: %v", b, err)
		}
	}
	for _, name := range []string{topology.StreamFleet, topology.StreamMetrics, topology.StreamAdvisories, topology.StreamDLQ} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
	o := topology.DefaultOptions()
	o.ReleasesMaxAge = time.Hour
	if err := topology.Ensure(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	info, _ = st.Info(ctx)
	if info.Config.MaxAge != time.Hour {
		t.Fatalf("max age not updated: %v", info.Config.MaxAge)
	}
}

// TestExpiredInstanceIsSeenByWatchers: an instance entry nobody refreshes
// expires with the bucket's TTL and its watcher is told (a delete marker),
// so a router stops routing to an instance whose provisioner died.
func TestExpiredInstanceIsSeenByWatchers(t *testing.T) {
	s := testkit.Start(t)
	js := s.JS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := topology.DefaultOptions()
	o.InstanceTTL = time.Second
	if err := topology.Ensure(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, topology.BucketInstances)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "hello.>", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	put := time.Now()
	if _, err := kv.Put(ctx, "hello.hello-v001.i1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case e := <-w.Updates():
			if e == nil || e.Operation() == jetstream.KeyValuePut {
				continue
			}
			if took := time.Since(put); took < time.Second {
				t.Fatalf("the entry went after %s, before its TTL", took)
			}
			return
		case <-ctx.Done():
			t.Fatal("the watcher never saw the expired entry go")
		}
	}
}

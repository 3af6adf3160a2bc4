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
}

// TestEnsureNeverTakesFromTheOperator: an operator's larger retention and
// limits stand; what is below redblack's needs is raised; the fields
// redblack owns exactly are set back; Check reports each before Reconcile
// acts, and Reconcile does what it reported.
func TestEnsureNeverTakesFromTheOperator(t *testing.T) {
	s := testkit.Start(t)
	js := s.JS(t)
	ctx := testkit.Context(t, 10*time.Second)
	st, err := js.Stream(ctx, topology.StreamReleases)
	if err != nil {
		t.Fatal(err)
	}
	// the operator keeps the audit log a year, bounds FLEET by size, and
	// someone shortened METRICS below what the judge needs
	c := st.CachedInfo().Config
	c.MaxAge = 365 * 24 * time.Hour
	if _, err := js.UpdateStream(ctx, c); err != nil {
		t.Fatal(err)
	}
	fs, _ := js.Stream(ctx, topology.StreamFleet)
	fc := fs.CachedInfo().Config
	fc.MaxAge, fc.MaxBytes = 0, 10<<30 // unlimited age, 10 GiB
	if _, err := js.UpdateStream(ctx, fc); err != nil {
		t.Fatal(err)
	}
	ms, _ := js.Stream(ctx, topology.StreamMetrics)
	mc := ms.CachedInfo().Config
	mc.MaxAge, mc.Duplicates = time.Minute, time.Minute
	if _, err := js.UpdateStream(ctx, mc); err != nil {
		t.Fatal(err)
	}
	o := topology.DefaultOptions()
	rows, err := topology.Check(ctx, js, o)
	if err != nil {
		t.Fatal(err)
	}
	action := func(rows []topology.Row, name, field string) string {
		for _, r := range rows {
			if r.Name == name && r.Field == field {
				return r.Action
			}
		}
		return "absent"
	}
	for _, w := range []struct{ name, field, action string }{
		{topology.StreamReleases, "max_age", topology.ActionKeep},
		{topology.StreamReleases, "deny_purge", topology.ActionOk},
		{topology.StreamFleet, "max_age", topology.ActionKeep},
		{topology.StreamFleet, "max_bytes", topology.ActionKeep},
		{topology.StreamMetrics, "max_age", topology.ActionRaise},
		{topology.StreamMetrics, "replicas", topology.ActionOk},
		{topology.BucketInstances, "ttl", topology.ActionOk},
	} {
		if got := action(rows, w.name, w.field); got != w.action {
			t.Errorf("check %s %s: %q, want %q", w.name, w.field, got, w.action)
		}
	}
	if _, err := topology.Reconcile(ctx, js, o); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]time.Duration{topology.StreamReleases: 365 * 24 * time.Hour, topology.StreamFleet: 0, topology.StreamMetrics: o.MetricsMaxAge} {
		s, _ := js.Stream(ctx, name)
		info, _ := s.Info(ctx)
		if info.Config.MaxAge != want {
			t.Errorf("%s max age %s after Reconcile, want %s", name, info.Config.MaxAge, want)
		}
	}
	if fs, _ = js.Stream(ctx, topology.StreamFleet); fs.CachedInfo().Config.MaxBytes != 10<<30 {
		t.Errorf("FLEET max bytes %d after Reconcile", fs.CachedInfo().Config.MaxBytes)
	}
	// a second look finds nothing to do
	rows, _ = topology.Check(ctx, js, o)
	for _, r := range rows {
		if r.Action == topology.ActionRaise || r.Action == topology.ActionSet || r.Action == topology.ActionCreate {
			t.Errorf("after Reconcile, still to do: %+v", r)
		}
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

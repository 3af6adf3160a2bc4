package phase_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/services/canary/phase"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// A canary decided by a copy that died before announcing it (the verdict
// is in the record, the canary's share taken back) is announced by the
// copy that resumes it: the same verdict, once, and no share given back to
// the canary to judge it again.
func TestDecidedCanaryIsAnnouncedNotJudgedAgain(t *testing.T) {
	srv := testkit.Start(t)
	js := srv.JS(t)
	ctx := testkit.Context(t, 30*time.Second)
	kv := func(name string) jetstream.KeyValue {
		b, err := js.KeyValue(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := spec.Apply(ctx, kv(topology.BucketServices), spec.Service{Name: "hello", Owner: "t", Capacity: 1, Artifact: spec.Artifact{Command: []string{"x"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := routes.Update(ctx, kv(topology.BucketRoutes), "hello", func(r *routes.Route) error {
		r.Weights = map[string]int{"hello-v001": routes.MaxWeight, "hello-v002-baseline": 0, "hello-v002-canary": 0}
		r.Active = "hello-v001"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rec := release.Record{ID: "r1", Service: "hello", Version: "v2", Group: "hello-v002", Sequence: 2, Previous: "hello-v001",
		Baseline: "hello-v002-baseline", Canary: "hello-v002-canary", JudgeFrom: time.Now().Add(-time.Minute),
		Report: &events.CanaryResult{Service: "hello", Canary: "hello-v002-canary", Score: 100, Reason: "decided before the copy died"}, Verdict: phase.VerdictPassed}
	rec.Enter(release.PhaseAccepted, time.Now().Add(-time.Minute))
	rec.Enter(release.PhaseCanary, time.Now().Add(-time.Minute))
	b, _ := json.Marshal(rec)
	if _, err := kv(topology.BucketReleases).Create(ctx, release.RecordKey(rec.ID), b); err != nil {
		t.Fatal(err)
	}
	fleet, err := js.OrderedConsumer(ctx, topology.StreamFleet, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.TrafficSet.Subject("hello")}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := phase.New(ctx, js, nil, logging.Nop())
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	cons, err := p.Start(pctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); cons.Stop(); p.Wait() }()
	rel, err := js.OrderedConsumer(ctx, topology.StreamReleases, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"release.hello.>"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := rel.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("no verdict announced: %v", err)
	}
	ev, _ := events.Decode(m.Data())
	var res events.CanaryResult
	if ev.Type != events.CanaryPassed.Type() || ev.DecodeData(&res) != nil || res.Reason != rec.Report.Reason {
		t.Fatalf("announced %s %s, want the recorded verdict", ev.Type, ev.Data)
	}
	if m, err := rel.Next(jetstream.FetchMaxWait(time.Second)); err == nil {
		t.Fatalf("a second announcement: %s", m.Subject())
	}
	if m, err := fleet.Next(jetstream.FetchMaxWait(500 * time.Millisecond)); err == nil {
		t.Fatalf("weights set again: %s", m.Data())
	}
}

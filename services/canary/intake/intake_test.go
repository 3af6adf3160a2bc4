package intake_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/services/canary/intake"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// rig is one test's embedded server, intake and event tap.
type rig struct {
	t        *testing.T
	ctx      context.Context
	nc       *nats.Conn
	js       jetstream.JetStream
	cons     *natsx.Consumer
	releases jetstream.KeyValue
	tap      *nats.Subscription
}

func newRig(t *testing.T, opts ...testkit.Option) *rig {
	t.Helper()
	s := testkit.Start(t, opts...)
	ctx := testkit.Context(t, 30*time.Second)
	nc := s.Conn(t)
	js, _ := jetstream.New(nc)
	services, _ := js.KeyValue(ctx, topology.BucketServices)
	for _, svc := range []spec.Service{
		{Name: "hello", Owner: "team-hello", Capacity: 1, Artifact: spec.Artifact{Command: []string{"hello"}}},
		{Name: "world", Owner: "team-world", Capacity: 1, Artifact: spec.Artifact{Paths: []string{"/opt/world"}}},
		{Name: "cloud", Owner: "team-cloud", Capacity: 1, Provider: spec.ProviderAWS},
	} {
		if _, err := spec.Apply(ctx, services, svc); err != nil {
			t.Fatal(err)
		}
	}
	in, err := intake.New(ctx, js, logging.Nop(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := in.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cons.Stop)
	tapConn := s.Conn(t)
	tap, err := tapConn.SubscribeSync("release.*.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := tapConn.Flush(); err != nil { // the server has the subscription before anything is published
		t.Fatal(err)
	}
	releases, _ := js.KeyValue(ctx, topology.BucketReleases)
	return &rig{t: t, ctx: ctx, nc: nc, js: js, cons: cons, releases: releases, tap: tap}
}

// publish sends raw bytes the way `nats pub` does: core NATS, no headers.
func (r *rig) publish(subject string, body []byte) {
	r.t.Helper()
	if err := r.nc.Publish(subject, body); err != nil {
		r.t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

// next returns the next accepted or rejected event the intake emits.
func (r *rig) next() events.Event {
	r.t.Helper()
	for {
		m, err := r.tap.NextMsg(10 * time.Second)
		if err != nil {
			r.t.Fatalf("no intake decision: %v", err)
		}
		if !strings.HasSuffix(m.Subject, ".accepted") && !strings.HasSuffix(m.Subject, ".rejected") {
			continue
		}
		ev, err := events.Decode(m.Data)
		if err != nil {
			r.t.Fatalf("intake emitted an invalid event on %s: %v", m.Subject, err)
		}
		return ev
	}
}

func (r *rig) expectRejected(field, reasonPart string) events.Rejected {
	r.t.Helper()
	ev := r.next()
	if ev.Type != events.ReleaseRejected.Type() {
		r.t.Fatalf("got %s (%s), want rejected on %s", ev.Type, ev.Data, field)
	}
	var d events.Rejected
	if err := ev.DecodeData(&d); err != nil {
		r.t.Fatal(err)
	}
	if d.Field != field || !strings.Contains(d.Reason, reasonPart) {
		r.t.Fatalf("rejected field=%q reason=%q; want field %q, reason containing %q", d.Field, d.Reason, field, reasonPart)
	}
	return d
}

func (r *rig) expectAccepted() (events.Event, events.Accepted) {
	r.t.Helper()
	ev := r.next()
	if ev.Type != events.ReleaseAccepted.Type() {
		r.t.Fatalf("got %s %s, want accepted", ev.Type, ev.Data)
	}
	var d events.Accepted
	if err := ev.DecodeData(&d); err != nil {
		r.t.Fatal(err)
	}
	return ev, d
}

// settled asserts every request was acked exactly once: nothing pending, no
// redelivery.
func (r *rig) settled() {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lag, err := r.cons.Lag(r.ctx)
		if err != nil {
			r.t.Fatal(err)
		}
		if lag.Redelivered != 0 {
			r.t.Fatalf("consumer redelivered %d messages", lag.Redelivered)
		}
		if lag.Pending == 0 && lag.AckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("consumer not settled: %+v", lag)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// afterwardsStillWorks: a valid request after the bad one is accepted.
func (r *rig) afterwardsStillWorks() {
	r.t.Helper()
	r.publish("release.world.requested", []byte(`{"version":"v9","artifact":{"command":["/opt/world/world"]}}`))
	_, acc := r.expectAccepted()
	if acc.Service != "world" {
		r.t.Fatalf("accepted %+v", acc)
	}
	r.settled()
}

func TestBareRequestAccepted(t *testing.T) {
	r := newRig(t)
	r.publish("release.hello.requested", []byte(`{"version":"v1.2.3"}`))
	ev, acc := r.expectAccepted()
	if acc.Group != "hello-v001" || acc.Sequence != 1 || acc.Version != "v1.2.3" || acc.Artifact.Command[0] != "hello" {
		t.Fatalf("accepted %+v", acc)
	}
	if ev.ReleaseID == "" || ev.ID != events.DerivedID(ev.ReleaseID, events.ReleaseAccepted, 0) {
		t.Fatalf("event ids %q %q", ev.ID, ev.ReleaseID)
	}
	e, err := r.releases.Get(r.ctx, release.RecordKey(ev.ReleaseID))
	if err != nil {
		t.Fatal(err)
	}
	var rec release.Record
	json.Unmarshal(e.Value(), &rec)
	if rec.Phase != release.PhaseAccepted || rec.Group != "hello-v001" || len(rec.History) != 1 {
		t.Fatalf("record %+v", rec)
	}
	if _, err := r.releases.Get(r.ctx, release.LockKey("hello")); err != nil {
		t.Fatalf("lock not taken: %v", err)
	}
	r.settled()
}

func TestCloudEventRequestAccepted(t *testing.T) {
	r := newRig(t)
	ev, _ := events.NewWithID("rel-ce-1", "test", events.ReleaseRequested, "hello", "", events.Requested{Version: "v2", Artifact: events.Artifact{Command: []string{"hello", "--v2"}}})
	b, _ := ev.Encode()
	if _, err := r.js.Publish(r.ctx, "release.hello.requested", b, jetstream.WithMsgID(ev.ID)); err != nil {
		t.Fatal(err)
	}
	got, acc := r.expectAccepted()
	if got.ReleaseID != "rel-ce-1" || acc.Artifact.Command[1] != "--v2" {
		t.Fatalf("accepted %+v %+v", got, acc)
	}
	r.settled()
}

func TestSecondConcurrentRequestRejected(t *testing.T) {
	r := newRig(t)
	r.publish("release.hello.requested", []byte(`{"version":"v1"}`))
	first, _ := r.expectAccepted()
	r.publish("release.hello.requested", []byte(`{"version":"v2"}`))
	d := r.expectRejected("service", "in progress")
	if d.InProgress != first.ReleaseID {
		t.Fatalf("in_progress = %q, want %q", d.InProgress, first.ReleaseID)
	}
	r.settled()
}

// TestOrphanLockFreed: a lock whose release has no record (the request
// gave up between taking the lock and writing the record) no longer holds
// the service forever: once older than OrphanLockAge it is freed and the
// next request is accepted; a young one still means "in progress".
func TestOrphanLockFreed(t *testing.T) {
	r := newRig(t)
	put := func(since time.Time) {
		b, _ := json.Marshal(map[string]any{"release": "ghost", "group": "hello-v001", "since": since, "sequence": 1})
		if _, err := r.releases.Put(r.ctx, release.LockKey("hello"), b); err != nil {
			t.Fatal(err)
		}
	}
	put(time.Now())
	r.publish("release.hello.requested", []byte(`{"version":"v1"}`))
	if d := r.expectRejected("service", "in progress"); d.InProgress != "ghost" {
		t.Fatalf("in_progress = %q", d.InProgress)
	}
	put(time.Now().Add(-release.OrphanLockAge - time.Second))
	r.publish("release.hello.requested", []byte(`{"version":"v1"}`))
	_, acc := r.expectAccepted()
	if acc.Group != "hello-v001" {
		t.Fatalf("accepted %+v", acc)
	}
	r.settled()
}

func TestRedeliveredRequestAcceptedOnce(t *testing.T) {
	r := newRig(t)
	ev, _ := events.NewWithID("rel-dup", "test", events.ReleaseRequested, "hello", "", events.Requested{Version: "v1"})
	b, _ := ev.Encode()
	r.publish("release.hello.requested", b) // no msg id: the stream stores it twice,
	r.publish("release.hello.requested", b) // as a redelivery would present it again
	r.expectAccepted()
	r.settled()
	st, _ := r.js.Stream(r.ctx, topology.StreamReleases)
	info, _ := st.Info(r.ctx, jetstream.WithSubjectFilter("release.hello.>"))
	counts := info.State.Subjects
	if counts["release.hello.accepted"] != 1 || counts["release.hello.rejected"] != 0 {
		t.Fatalf("per subject %v: want exactly one accepted", counts)
	}
	seq, _ := r.releases.Get(r.ctx, release.CounterKey("hello"))
	var c release.Counter
	json.Unmarshal(seq.Value(), &c)
	if c.Sequence != 1 {
		t.Fatalf("counter %+v: a redelivery advanced it", c)
	}
}

func TestReplayedReleaseIDRejected(t *testing.T) {
	r := newRig(t)
	ev, _ := events.NewWithID("rel-once", "test", events.ReleaseRequested, "hello", "", events.Requested{Version: "v1"})
	b, _ := ev.Encode()
	r.publish("release.hello.requested", b)
	r.expectAccepted()
	// the release ends (a later issue does this): its lock is released
	if err := r.releases.Delete(r.ctx, release.LockKey("hello")); err != nil {
		t.Fatal(err)
	}
	r.publish("release.hello.requested", b)
	r.expectRejected("id", "already used")
	r.settled()
}

func TestNextGroupNumber(t *testing.T) {
	r := newRig(t)
	r.publish("release.hello.requested", []byte(`{"version":"v1"}`))
	r.expectAccepted()
	r.releases.Delete(r.ctx, release.LockKey("hello"))
	r.publish("release.hello.requested", []byte(`{"version":"v2"}`))
	_, acc := r.expectAccepted()
	if acc.Group != "hello-v002" {
		t.Fatalf("second release group %q, want hello-v002", acc.Group)
	}
}

// One test per poison message and per validation rule.
func TestRejections(t *testing.T) {
	garbage := make([]byte, 512)
	rand.Read(garbage)
	cases := []struct {
		name, subject, body, field, reason string
	}{
		{"malformed JSON", "release.hello.requested", `{"version":`, "body", "not valid JSON"},
		{"empty body", "release.hello.requested", ``, "body", "empty"},
		{"binary garbage", "release.hello.requested", string(garbage), "body", "not valid JSON"},
		{"JSON not an object", "release.hello.requested", `[1,2,3]`, "body", "not a JSON release request"},
		{"body over 64 KiB", "release.hello.requested", `{"version":"v1","reason":"` + strings.Repeat("x", 70<<10) + `"}`, "body", "at most 65536"},
		{"unknown service", "release.nosuch.requested", `{"version":"v1"}`, "service", "unknown service"},
		{"invalid subject token", "release.Hello_World.requested", `{"version":"v1"}`, "subject", "not a valid service name"},
		{"unknown field", "release.hello.requested", `{"version":"v1","colour":"red"}`, "colour", "unknown field"},
		{"wrong type", "release.hello.requested", `{"version":7}`, "version", "must be string"},
		{"version missing", "release.hello.requested", `{}`, "version", "want 1-64"},
		{"version bad chars", "release.hello.requested", `{"version":"v1 beta"}`, "version", "want 1-64"},
		{"version too long", "release.hello.requested", `{"version":"` + strings.Repeat("a", 65) + `"}`, "version", "want 1-64"},
		{"subject and body disagree", "release.hello.requested", `{"service":"world","version":"v1"}`, "service", "subject names"},
		{"no artifact and no default", "release.world.requested", `{"version":"v1"}`, "artifact", "needs a command"},
		{"artifact of another provider", "release.hello.requested", `{"version":"v1","artifact":{"ami":"ami-123"}}`, "artifact", "aws provider"},
		{"aws without ami", "release.cloud.requested", `{"version":"v1","artifact":{"command":["x"]}}`, "artifact", "needs an ami"},
		{"CloudEvent invalid", "release.hello.requested", `{"specversion":"1.0","id":"x"}`, "body", "not a valid CloudEvent"},
		{"CloudEvent wrong type", "release.hello.requested", `{"specversion":"1.0","id":"x","source":"s","type":"io.redblack.release.baked","time":"2026-11-26T10:00:00Z","data":{"version":"v1"}}`, "type", "want"},
		{"CloudEvent bad id", "release.hello.requested", `{"specversion":"1.0","id":"a.b","source":"s","type":"io.redblack.release.requested","time":"2026-11-26T10:00:00Z","data":{"version":"v1"}}`, "id", "invalid release id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			r.publish(c.subject, []byte(c.body))
			r.expectRejected(c.field, c.reason)
			r.settled()
			r.afterwardsStillWorks()
			if _, err := r.releases.Get(r.ctx, release.LockKey("hello")); err == nil {
				t.Fatal("a rejected request took hello's lock")
			}
		})
	}
}

func TestTenMegabytePayload(t *testing.T) {
	t.Run("refused by the server at its default limit", func(t *testing.T) {
		r := newRig(t)
		err := r.nc.Publish("release.hello.requested", make([]byte, 10<<20))
		if err != nats.ErrMaxPayload {
			t.Fatalf("publish of 10 MB = %v, want %v", err, nats.ErrMaxPayload)
		}
		r.afterwardsStillWorks()
	})
	t.Run("rejected by the intake where the server allows it", func(t *testing.T) {
		r := newRig(t, testkit.WithMaxPayload(16<<20))
		body := fmt.Sprintf(`{"version":"v1","reason":"%s"}`, strings.Repeat("x", 10<<20))
		r.publish("release.hello.requested", []byte(body))
		r.expectRejected("body", "at most 65536")
		r.settled()
		r.afterwardsStillWorks()
	})
}

func TestInvalidSubjectRejectionGoesToInvalidToken(t *testing.T) {
	r := newRig(t)
	sub, _ := r.nc.SubscribeSync("release._invalid.rejected")
	r.publish("release.UPPER.requested", []byte(`{"version":"v1"}`))
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("no rejection on release._invalid.rejected: %v", err)
	}
}

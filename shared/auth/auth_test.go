package auth_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// server is an embedded NATS server in operator mode with the topology.
type server struct {
	t     *testing.T
	a     *auth.Authority
	e     *natsx.Embedded
	admin *nats.Conn
	js    jetstream.JetStream
}

func start(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	a, err := auth.Open(filepath.Join(dir, "creds"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: filepath.Join(dir, "js"), Listen: "127.0.0.1:0", Auth: a.ServerOptions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	a.Attach(e.Server())
	s := &server{t: t, a: a, e: e}
	creds, err := a.Admin("admin")
	if err != nil {
		t.Fatal(err)
	}
	s.admin = s.connect("admin", creds).nc
	s.js, _ = jetstream.New(s.admin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := topology.Ensure(ctx, s.js, topology.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	return s
}

// client is a connection that records the server's asynchronous errors
// (permission violations).
type client struct {
	t    *testing.T
	nc   *nats.Conn
	mu   sync.Mutex
	errs []string
}

func (s *server) connect(name string, creds []byte) *client {
	s.t.Helper()
	c := &client{t: s.t}
	nc, err := nats.Connect(s.e.ClientURL(), append(mustCreds(s.t, creds),
		nats.Name(name),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err.Error())
			c.mu.Unlock()
		}))...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	c.nc = nc
	return c
}

func mustCreds(t *testing.T, creds []byte) []nats.Option {
	t.Helper()
	opts, err := natsx.CredsOptions(creds)
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

// refused waits (bounded) for the server to report a permission violation
// naming subject.
func (c *client) refused(what, subject string) {
	c.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, e := range c.errs {
			if strings.Contains(e, "Permissions Violation") && strings.Contains(e, `"`+subject+`"`) {
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Errorf("%s: no permission violation for %q (errors: %v)", what, subject, c.errs)
}

// counts is the number of messages in every stream.
func (s *server) counts() map[string]uint64 {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[string]uint64{}
	for name := range s.js.StreamNames(ctx).Name() {
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			s.t.Fatal(err)
		}
		out[name] = st.CachedInfo().State.Msgs
	}
	return out
}

func (s *server) unchanged(before map[string]uint64) {
	s.t.Helper()
	for name, n := range s.counts() {
		if n != before[name] {
			s.t.Errorf("stream %s: %d messages, %d before: a refused publish left something behind", name, n, before[name])
		}
	}
}

// reopen opens the authority of dir again and starts a server trusting it,
// stopped when the test ends: a restart of `up`.
func reopen(t *testing.T, dir string) (*auth.Authority, *natsx.Embedded) {
	t.Helper()
	a, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Auth: a.ServerOptions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	return a, e
}

func TestAnonymousRefused(t *testing.T) {
	s := start(t)
	if nc, err := nats.Connect(s.e.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("an anonymous connection was accepted")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("anonymous: %v, want an authorization violation", err)
	}
	// a user signed by another authority is refused too
	other, err := auth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := other.Admin("admin")
	if nc, err := nats.Connect(s.e.ClientURL(), mustCreds(t, creds)...); err == nil {
		nc.Close()
		t.Fatal("a user of another operator was accepted")
	}
}

func TestKeysAreCreatedOnceAndPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "creds")
	a, err := auth.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"operator.nk", "system.nk", "account.nk"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v, want 0600", f, err, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("creds dir mode %v, want 0700", st.Mode().Perm())
	}
	creds, _ := a.Admin("admin")
	path, err := a.WriteCreds("admin", creds)
	if st, _ := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin creds: %v", err)
	}
	// reopening keeps the keys: creds issued before still work
	_, e := reopen(t, dir)
	nc, err := nats.Connect(e.ClientURL(), mustCreds(t, creds)...)
	if err != nil {
		t.Fatalf("creds of the first open, server of the second: %v", err)
	}
	nc.Close()
}

// TestTeamUser: what a team user may do works, and each forbidden action
// fails with a permission error and leaves nothing in any stream.
func TestTeamUser(t *testing.T) {
	s := start(t)
	creds, err := s.a.AddTeam("payments", "alice", []string{"hello"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := auth.IdentityOf(creds)
	if err != nil || id != (auth.Identity{Team: "payments", User: "alice"}) {
		t.Fatalf("identity %v: %v", id, err)
	}
	c := s.connect("alice", creds)

	// allowed: its own API subject reaches the API (an admin responder here)
	api, _ := s.admin.Subscribe(subjects.APIPrefix+".>", func(m *nats.Msg) { _ = m.Respond([]byte(m.Subject)) })
	defer api.Unsubscribe()
	s.admin.Flush()
	own := subjects.API("payments", "alice", "release", "hello")
	if msg, err := c.nc.Request(own, []byte(`{}`), 2*time.Second); err != nil || string(msg.Data) != own {
		t.Fatalf("own API call: %v", err)
	}
	// allowed: reading its own service's events
	ev, _ := events.New("test", events.ReleaseAccepted, "hello", "r1", events.Accepted{Service: "hello", Version: "v1", Group: "hello-v001"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := natsx.Publish(ctx, s.js, events.ReleaseAccepted.Subject("hello"), ev); err != nil {
		t.Fatal(err)
	}
	other, _ := events.New("test", events.ReleaseAccepted, "billing", "r2", events.Accepted{Service: "billing", Version: "v1", Group: "billing-v001"})
	if _, err := natsx.Publish(ctx, s.js, events.ReleaseAccepted.Subject("billing"), other); err != nil {
		t.Fatal(err)
	}
	// a consumer made for it (by the team API's consumer verb; here the
	// admin), it pulls from
	made, err := s.js.CreateConsumer(ctx, topology.StreamReleases, jetstream.ConsumerConfig{FilterSubject: subjects.AllReleases("hello"), AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tjs, _ := jetstream.New(c.nc)
	cons, err := tjs.Consumer(ctx, topology.StreamReleases, made.CachedInfo().Name)
	if err != nil {
		t.Fatalf("the consumer made for it: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(3 * time.Second))
	if err != nil || msg.Subject() != events.ReleaseAccepted.Subject("hello") {
		t.Fatalf("reading its own events: %v", err)
	}

	before := s.counts()
	// forbidden: every command, KV write, sample, raw event, other team's
	// or user's API subject
	for _, subj := range []string{
		events.TrafficSet.Subject("hello"), events.TrafficSwitch.Subject("hello"), events.TrafficRestore.Subject("hello"),
		events.ServerGroupCreate.Subject("hello"), events.InstanceTerminate.Subject("hello"),
		events.ReleaseRequested.Subject("hello"), events.RollbackRequested.Subject("hello"),
		"$KV.instances.hello.hello-v001.x", "$KV.services.hello", "$KV.releases.lock.hello", "$KV.routes.hello",
		subjects.Sample("hello", "hello-v001", subjects.PublisherRouter, "r1"),
		subjects.API("payments", "bob", "release", "hello"),
		subjects.API("billing", "carol", "release", "billing"),
		subjects.API("payments", "alice", "release", "billing"),
		"$JS.API.STREAM.UPDATE." + topology.StreamReleases,
		"$JS.API.STREAM.PURGE." + topology.StreamFleet,
		"$JS.API.CONSUMER.DELETE." + topology.StreamReleases + "." + topology.DurableCanaryIntake,
		"$JS.API.CONSUMER.MSG.NEXT." + topology.StreamReleases + "." + topology.DurableCanaryIntake,
		"$JS.API.CONSUMER.CREATE." + topology.StreamReleases + "." + topology.DurableCanaryIntake + ".release.hello.>",
		"$JS.API.CONSUMER.CREATE." + topology.StreamReleases + ".x.release.billing.>",
		"$JS.API.CONSUMER.CREATE." + topology.StreamReleases + ".x",
		// even on its own events: a create request's body may name any
		// deliver subject (another team's inbox, the JetStream API)
		"$JS.API.CONSUMER.CREATE." + topology.StreamReleases + ".x.release.hello.>",
		"redblack.admin.team-add",
	} {
		if err := c.nc.Publish(subj, []byte(`{"version":"v9"}`)); err != nil {
			t.Fatal(err)
		}
		c.nc.Flush()
		c.refused("publish", subj)
	}
	// forbidden: subscribing to others' inboxes or to raw subjects
	for _, subj := range []string{"_INBOX.>", "_INBOX.payments.bob.>", "release.>", "fleet.hello.>", subjects.APIPrefix + ".>"} {
		sub, err := c.nc.SubscribeSync(subj)
		if err != nil {
			t.Fatal(err)
		}
		c.nc.Flush()
		c.refused("subscribe", subj)
		sub.Unsubscribe()
	}
	// no consumer of its own, pull, ordered or push
	if _, err := tjs.OrderedConsumer(ctx, topology.StreamReleases, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjects.AllReleases("hello")}}); err == nil {
		t.Error("an ordered consumer of its own was created")
	}
	push := `{"stream_name":"RELEASES","config":{"name":"evil","filter_subject":"release.hello.>","deliver_subject":"_INBOX.billing.carol.x","ack_policy":"none"},"action":"create"}`
	if m, err := c.nc.Request("$JS.API.CONSUMER.CREATE.RELEASES.evil.release.hello.>", []byte(push), time.Second); err == nil {
		t.Errorf("a push consumer delivering to another team's inbox: %s", m.Data)
	}
	s.unchanged(before)
	// and the services' durables are as they were
	for stream, names := range topology.Durables {
		for _, d := range names {
			if _, err := s.js.Consumer(ctx, stream, d); err == nil {
				t.Errorf("a durable %s/%s exists: a team created it", stream, d)
			}
		}
	}
}

func TestRevokeEndsAccess(t *testing.T) {
	s := start(t)
	creds, err := s.a.AddTeam("payments", "alice", []string{"hello"})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	nc, err := nats.Connect(s.e.ClientURL(), append(mustCreds(t, creds), nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if n, err := s.a.RevokeTeam("payments"); err != nil || n != 1 {
		t.Fatalf("revoke: %d, %v", n, err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked user's connection is still open")
	}
	if nc, err := nats.Connect(s.e.ClientURL(), mustCreds(t, creds)...); err == nil {
		nc.Close()
		t.Fatal("revoked creds connected again")
	}
	if ts := s.a.Teams(); len(ts) != 1 || ts[0].Revoked.IsZero() {
		t.Fatalf("teams after revoke: %+v", ts)
	}
	// the revocation survives a restart of the authority
	b, e := reopen(t, s.a.Dir())
	if nc, err := nats.Connect(e.ClientURL(), mustCreds(t, creds)...); err == nil {
		nc.Close()
		t.Fatal("revoked creds connected after a restart")
	}
	// the team can be issued afresh; the new user works
	fresh, err := b.AddTeam("payments", "alice", []string{"hello"})
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(e.ClientURL(), mustCreds(t, fresh)...); err != nil {
		t.Fatalf("a user issued after the revocation: %v", err)
	} else {
		nc.Close()
	}
	// and the first user stays revoked, through another restart too
	_, e2 := reopen(t, s.a.Dir())
	if nc, err := nats.Connect(e2.ClientURL(), mustCreds(t, creds)...); err == nil {
		nc.Close()
		t.Fatal("the revoked user connected after its team was added again and the authority restarted")
	}
	if nc, err := nats.Connect(e2.ClientURL(), mustCreds(t, fresh)...); err != nil {
		t.Fatalf("the fresh user after a restart: %v", err)
	} else {
		nc.Close()
	}
}

func TestTeamsCannotShareServices(t *testing.T) {
	s := start(t)
	if _, err := s.a.AddTeam("payments", "alice", []string{"hello"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		team, user string
		services   []string
	}{
		{"billing", "bob", []string{"hello"}},         // another team's service
		{"payments", "carol", []string{"hello", "x"}}, // a team's services are fixed
		{"admin", "x", []string{"y"}},                 // reserved
		{"Bad", "x", []string{"y"}},
		{"ok", "x", nil},
		{"ok", "x", []string{"a.b"}},
	} {
		if _, err := s.a.AddTeam(c.team, c.user, c.services); err == nil {
			t.Errorf("AddTeam(%s, %s, %v) succeeded", c.team, c.user, c.services)
		}
	}
	if s.a.Owner("hello") != "payments" {
		t.Fatalf("owner of hello: %q", s.a.Owner("hello"))
	}
}

// TestServicePermissions: each service may publish what it emits, and not
// what another service does: the router cannot terminate instances, chaos
// cannot switch traffic, no service may change the topology.
func TestServicePermissions(t *testing.T) {
	s := start(t)
	conn := func(name string) *client {
		creds, err := s.a.Service(name)
		if err != nil {
			t.Fatal(err)
		}
		return s.connect(name, creds)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	router, chaos, watchdog := conn("router"), conn("chaos"), conn("watchdog")
	rjs, _ := jetstream.New(router.nc)
	ev, _ := events.New("test", events.TrafficChanged, "hello", "", events.Traffic{Service: "hello"})
	if _, err := natsx.Publish(ctx, rjs, events.TrafficChanged.Subject("hello"), ev); err != nil {
		t.Fatalf("router publishing traffic.changed: %v", err)
	}
	cjs, _ := jetstream.New(chaos.nc)
	term, _ := events.New("test", events.InstanceTerminate, "hello", "", events.InstanceCommand{Service: "hello", Instance: "hello-v001-1"})
	if _, err := natsx.Publish(ctx, cjs, events.InstanceTerminate.Subject("hello"), term); err != nil {
		t.Fatalf("chaos publishing instance.terminate: %v", err)
	}
	if err := topology.Prepare(ctx, rjs, topology.DefaultOptions()); err != nil {
		t.Fatalf("a service checking the topology: %v", err)
	}
	before := s.counts()
	for _, c := range []struct {
		who     *client
		subject string
	}{
		{router, events.InstanceTerminate.Subject("hello")},
		{router, events.ServerGroupCreate.Subject("hello")},
		{router, "$KV.instances.hello.x"},
		{chaos, events.TrafficSwitch.Subject("hello")},
		{chaos, events.TrafficSet.Subject("hello")},
		{chaos, "$KV.routes.hello"},
		{chaos, subjects.Sample("hello", "hello-v001", subjects.PublisherRouter, "r1")},
		{watchdog, events.ServerGroupDestroy.Subject("hello")},
		{watchdog, "$KV.services.hello"},
		{router, "$JS.API.STREAM.UPDATE." + topology.StreamReleases},
		{chaos, "$JS.API.STREAM.DELETE." + topology.StreamFleet},
		{router, "redblack.admin.team-add"},
	} {
		if err := c.who.nc.Publish(c.subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		c.who.nc.Flush()
		c.who.refused("publish", c.subject)
	}
	s.unchanged(before)
	for name := range auth.Publishes {
		if _, err := auth.ServicePermissions(name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := auth.ServicePermissions("nobody"); err == nil {
		t.Fatal("permissions for an unknown service")
	}
}

// TestSamplesBoundToPublisher: a sample's subject names its publisher,
// and each user may publish only as itself: the router as the router, the
// discovery client in api's instances as caller-api and only for the
// services api calls, the admin not at all. Exactly the two allowed
// samples reach METRICS.
func TestSamplesBoundToPublisher(t *testing.T) {
	s := start(t)
	rc, err := s.a.Service("router")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := s.a.Caller("api", []string{"hello"})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := s.a.Admin("admin2")
	if err != nil {
		t.Fatal(err)
	}
	router, caller, admin := s.connect("router", rc), s.connect("caller", cc), s.connect("admin2", ac)
	before := s.counts()
	allowed := []struct {
		who     *client
		subject string
	}{
		{router, subjects.Sample("hello", "hello-v001", subjects.PublisherRouter, "r1")},
		{caller, subjects.Sample("hello", "hello-v001", subjects.CallerPublisher("api"), "c1")},
	}
	for _, c := range allowed {
		if err := c.who.nc.Publish(c.subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		c.who.nc.Flush()
	}
	for _, c := range []struct {
		who     *client
		subject string
	}{
		{router, subjects.Sample("hello", "hello-v001", subjects.CallerPublisher("api"), "r1")},
		{caller, subjects.Sample("hello", "hello-v001", subjects.PublisherRouter, "r1")},
		{caller, subjects.Sample("hello", "hello-v001", subjects.CallerPublisher("web"), "c1")},
		{caller, subjects.Sample("billing", "billing-v001", subjects.CallerPublisher("api"), "c1")},
		{caller, "metrics.hello.hello-v001"},
		{admin, subjects.Sample("hello", "hello-v001", subjects.PublisherRouter, "r1")},
		{admin, subjects.Sample("hello", "hello-v001", subjects.CallerPublisher("api"), "c1")},
		{admin, "metrics.hello.hello-v001"},
	} {
		if err := c.who.nc.Publish(c.subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		c.who.nc.Flush()
		c.who.refused("publish", c.subject)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.counts()[topology.StreamMetrics] != before[topology.StreamMetrics]+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.counts()[topology.StreamMetrics]; got != before[topology.StreamMetrics]+2 {
		t.Fatalf("METRICS holds %d samples, %d before: want the 2 allowed", got, before[topology.StreamMetrics])
	}
}

// TestAuditorReadsEverythingWritesNothing.
func TestAuditorReadsEverythingWritesNothing(t *testing.T) {
	s := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, _ := events.New("test", events.ReleaseAccepted, "hello", "r1", events.Accepted{Service: "hello", Version: "v1", Group: "hello-v001"})
	if _, err := natsx.Publish(ctx, s.js, events.ReleaseAccepted.Subject("hello"), ev); err != nil {
		t.Fatal(err)
	}
	creds, err := s.a.Auditor("eve")
	if err != nil {
		t.Fatal(err)
	}
	c := s.connect("eve", creds)
	ajs, _ := jetstream.New(c.nc)
	for _, stream := range []string{topology.StreamReleases, topology.StreamFleet} {
		if _, err := ajs.Stream(ctx, stream); err != nil {
			t.Fatalf("auditor stream info %s: %v", stream, err)
		}
	}
	cons, err := ajs.OrderedConsumer(ctx, topology.StreamReleases, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("auditor reading RELEASES: %v", err)
	}
	if _, err := cons.Next(jetstream.FetchMaxWait(3 * time.Second)); err != nil {
		t.Fatalf("auditor reading RELEASES: %v", err)
	}
	kv, err := ajs.KeyValue(ctx, topology.BucketServices)
	if err != nil {
		t.Fatalf("auditor opening the services bucket: %v", err)
	}
	if _, err := kv.Get(ctx, "hello"); err != jetstream.ErrKeyNotFound {
		t.Fatalf("auditor reading a key: %v", err)
	}
	before := s.counts()
	for _, subj := range []string{
		events.ReleaseRequested.Subject("hello"), events.TrafficSet.Subject("hello"), "$KV.services.hello",
		subjects.API("audit", "eve", "release", "hello"),
		"$JS.API.CONSUMER.MSG.NEXT." + topology.StreamReleases + "." + topology.DurableWatchdogBake,
		"$JS.API.STREAM.PURGE." + topology.StreamMetrics,
	} {
		c.nc.Publish(subj, []byte(`{}`))
		c.nc.Flush()
		c.refused("auditor publish", subj)
	}
	s.unchanged(before)
}

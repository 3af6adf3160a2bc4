package provisioner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/services/provisioner"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/hosts"
	"github.com/redblack/redblack/services/provisioner/local"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

var hello string

func TestMain(m *testing.M) { testkit.MainWithHello(m, &hello) }

type rig struct {
	t         *testing.T
	ctx       context.Context
	nc        *nats.Conn
	js        jetstream.JetStream
	tap       *nats.Subscription
	instances jetstream.KeyValue
	stop      func() // stops the provisioner
}

func newRig(t *testing.T) *rig { return newRigWith(t, topology.DefaultOptions(), true) }

func newRigWith(t *testing.T, topo topology.Options, stopInstances bool) *rig {
	s := testkit.Start(t, testkit.WithTopology(topo))
	ctx := testkit.Context(t, 60*time.Second)
	nc := s.Conn(t)
	js, _ := jetstream.New(nc)
	kv, _ := js.KeyValue(ctx, topology.BucketServices)
	spec.Apply(ctx, kv, spec.Service{Name: "hello", Owner: "t", Capacity: 2, MaxCapacity: 5,
		Health: spec.Health{Path: "/healthz", Interval: spec.Duration(100 * time.Millisecond), HealthyThreshold: 2, UnhealthyThreshold: 2},
		// the spec allows programs under /no/such and /bin besides hello
		Artifact: spec.Artifact{Command: []string{hello}, Paths: []string{"/no/such", "/bin"}}})
	tap, _ := nc.SubscribeSync("fleet.>")
	cfg := provisioner.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.StartupTimeout = 3 * time.Second
	cfg.StopInstancesOnExit = stopInstances
	cfg.Topology = topo
	cfg.Local = local.Config{StartupProbe: 50 * time.Millisecond, GracePeriod: time.Second, BackoffBase: 50 * time.Millisecond}
	pnc := s.Conn(t)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- provisioner.New(cfg, pnc, logging.Nop()).Run(runCtx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	r := &rig{t: t, ctx: ctx, nc: nc, js: js, tap: tap, stop: stop}
	for {
		if _, err := nc.Request("$SRV.PING.redblack-provisioner", nil, 200*time.Millisecond); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("provisioner did not start")
		}
	}
	r.instances, _ = js.KeyValue(ctx, topology.BucketInstances)
	return r
}

func (r *rig) command(k events.Kind, data any) string {
	r.t.Helper()
	ev, err := events.New("test", k, "hello", "", data)
	if err != nil {
		r.t.Fatal(err)
	}
	b, _ := ev.Encode()
	// core publish: a redelivery is simulated by sending the same event twice
	if err := r.nc.Publish(k.Subject("hello"), b); err != nil {
		r.t.Fatal(err)
	}
	return ev.ID
}

// await returns the first event of kind k (skipping others), failing on
// servergroup.failed unless that is what is awaited.
func (r *rig) await(k events.Kind) events.Event {
	r.t.Helper()
	for {
		m, err := r.tap.NextMsg(15 * time.Second)
		if err != nil {
			r.t.Fatalf("no %s: %v", k, err)
		}
		ev, err := events.Decode(m.Data)
		if err != nil {
			continue
		}
		if ev.Type == k.Type() {
			return ev
		}
		if ev.Type == events.ServerGroupFailed.Type() {
			r.t.Fatalf("unexpected failure: %s", ev.Data)
		}
	}
}

func (r *rig) discovered(group string) []discovery.Entry {
	lister, err := r.instances.ListKeysFiltered(r.ctx, "hello."+group+".*")
	if err != nil {
		r.t.Fatal(err)
	}
	var out []discovery.Entry
	for k := range lister.Keys() {
		e, err := r.instances.Get(r.ctx, k)
		if err == nil {
			d, _ := discovery.Decode(e.Value())
			out = append(out, d)
		}
	}
	return out
}

func TestCreateReadyDiscoveryAndIdempotence(t *testing.T) {
	r := newRig(t)
	cmd := events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Version: "v1", Capacity: 3}
	r.command(events.ServerGroupCreate, cmd)
	r.command(events.ServerGroupCreate, cmd) // redelivered: launches nothing twice
	r.await(events.ServerGroupCreated)
	ready := r.await(events.ServerGroupReady)
	var d events.ServerGroup
	ready.DecodeData(&d)
	if d.Up != 3 || d.Group != "hello-v001" {
		t.Fatalf("ready %+v", d)
	}
	entries := r.discovered("hello-v001")
	if len(entries) != 3 {
		t.Fatalf("discovery has %d entries, want 3", len(entries))
	}
	for _, e := range entries {
		if e.State != discovery.StateUp || !strings.HasPrefix(e.Address, "127.0.0.1:") || e.Version != "v1" {
			t.Fatalf("entry %+v", e)
		}
	}
	// the list endpoint shows the group once, with 3 instances
	resp, err := r.nc.Request("redblack.provisioner.list", []byte("hello"), 2*time.Second)
	var groups []fleet.Group
	if err != nil || json.Unmarshal(resp.Data, &groups) != nil || len(groups) != 1 || len(groups[0].Instances) != 3 {
		t.Fatalf("list: %s %v", resp.Data, err)
	}
	for _, i := range groups[0].Instances {
		if i.ID == "hello-v001-4" {
			t.Fatal("the redelivered create launched a fourth instance")
		}
	}

	// terminate → terminated, replaced, up; discovery back to 3
	victim := entries[0].ID
	r.command(events.InstanceTerminate, events.InstanceCommand{Service: "hello", Group: "hello-v001", Instance: victim})
	term := r.await(events.InstanceTerminated)
	var ti events.Instance
	term.DecodeData(&ti)
	if ti.Instance != victim {
		t.Fatalf("terminated %+v", ti)
	}
	r.await(events.InstanceReplaced)
	r.await(events.InstanceUp)
	// resize, destroy
	r.command(events.ServerGroupResize, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Capacity: 1})
	r.await(events.ServerGroupResized)
	r.command(events.ServerGroupDestroy, events.ServerGroupCommand{Service: "hello", Group: "hello-v001"})
	r.await(events.ServerGroupDestroyed)
	for deadline := time.Now().Add(5 * time.Second); len(r.discovered("hello-v001")) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("discovery still lists %v", r.discovered("hello-v001"))
		}
	}
}

// Each bad input: a failed (or no-op) event with the reason, and no group
// left running.
func TestBadInput(t *testing.T) {
	cases := []struct {
		name   string
		kind   events.Kind
		cmd    events.ServerGroupCommand
		want   events.Kind
		reason string
	}{
		{"command does not exist", events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Capacity: 1, Artifact: events.Artifact{Command: []string{"/no/such/app"}}}, events.ServerGroupFailed, "artifact cannot run"},
		{"command the spec does not allow", events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Capacity: 1, Artifact: events.Artifact{Command: []string{"/usr/bin/env"}}}, events.ServerGroupFailed, "not a program this service may run"},
		{"command exits at once", events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Capacity: 1, Artifact: events.Artifact{Command: []string{"/bin/false"}}}, events.ServerGroupFailed, "crash at start"},
		{"health never answers", events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Capacity: 2, Artifact: events.Artifact{Command: []string{hello, "--fail-health"}}}, events.ServerGroupFailed, "not all up within 3s: 0 of 2 up"},
		{"capacity 0", events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Capacity: 0}, events.ServerGroupFailed, "capacity 0: want 1..5"},
		{"above the service max", events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Capacity: 6}, events.ServerGroupFailed, "capacity 6: want 1..5"},
		{"resize above the max", events.ServerGroupResize, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Capacity: 600}, events.ServerGroupFailed, "global cap 500"},
		{"group of another service", events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: "other-v001", Capacity: 1}, events.ServerGroupFailed, "not a group of hello"},
		{"destroy a group that does not exist", events.ServerGroupDestroy, events.ServerGroupCommand{Service: "hello", Group: "hello-v009"}, events.ServerGroupDestroyed, "nothing to do"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			r.command(c.kind, c.cmd)
			ev := r.awaitAny(c.want)
			var d events.ServerGroup
			ev.DecodeData(&d)
			if !strings.Contains(d.Reason, c.reason) {
				t.Fatalf("reason %q, want %q", d.Reason, c.reason)
			}
			resp, err := r.nc.Request("redblack.provisioner.list", nil, 10*time.Second)
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			if string(resp.Data) != "null" && string(resp.Data) != "[]" {
				t.Fatalf("groups left: %s", resp.Data)
			}
			for deadline := time.Now().Add(5 * time.Second); len(r.discovered("hello-v001")) > 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("instances left in discovery: %v", r.discovered("hello-v001"))
				}
			}
		})
	}
}

func TestUnknownService(t *testing.T) {
	r := newRig(t)
	ev, _ := events.New("test", events.ServerGroupCreate, "nosuch", "", events.ServerGroupCommand{Service: "nosuch", Group: "nosuch-v001", Capacity: 1})
	b, _ := ev.Encode()
	r.nc.Publish(events.ServerGroupCreate.Subject("nosuch"), b)
	got := r.awaitAny(events.ServerGroupFailed)
	if !strings.Contains(string(got.Data), "unknown service") {
		t.Fatalf("failed %s", got.Data)
	}
}

// awaitAny returns the first event of kind k, whatever comes before it.
func (r *rig) awaitAny(k events.Kind) events.Event {
	r.t.Helper()
	for {
		m, err := r.tap.NextMsg(15 * time.Second)
		if err != nil {
			r.t.Fatalf("no %s: %v", k, err)
		}
		if ev, err := events.Decode(m.Data); err == nil && ev.Type == k.Type() {
			return ev
		}
	}
}

// TestDiscoveryExpiresWhenTheProvisionerDies: the heartbeat keeps entries
// alive past the bucket's TTL; once the provisioner is gone they expire.
// The TTL is 6 s, so the heartbeat (every TTL/3) must stall for over 4 s
// to lose an entry: a loaded CI machine once stalled a 1.5 s TTL's puts,
// and under the race detector beside a fuzzer a 4 s TTL's.
func TestDiscoveryExpiresWhenTheProvisionerDies(t *testing.T) {
	topo := topology.DefaultOptions()
	topo.InstanceTTL = 6 * time.Second
	r := newRigWith(t, topo, false) // its instances outlive it, as after a crash
	r.command(events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Version: "v1", Capacity: 2})
	r.await(events.ServerGroupReady)
	ids := func() []string {
		var out []string
		for _, e := range r.discovered("hello-v001") {
			out = append(out, e.ID)
		}
		slices.Sort(out)
		return out
	}
	first := ids()
	if len(first) != 2 {
		t.Fatalf("entries %v when the group is ready, want 2", first)
	}
	for until := time.Now().Add(2 * topo.InstanceTTL); time.Now().Before(until); time.Sleep(100 * time.Millisecond) {
		if now := ids(); !slices.Equal(now, first) {
			t.Fatalf("entries %v while the provisioner lives, want %v", now, first)
		}
	}
	r.stop()
	t.Cleanup(func() { testkit.KillAll(hello) })
	deadline := time.Now().Add(5 * topo.InstanceTTL)
	for len(r.discovered("hello-v001")) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("entries of a dead provisioner never expired: %v", r.discovered("hello-v001"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPendingGroupsOfAnotherCopy: the groups not yet up live in the
// releases bucket, so the copy tracking the fleet settles those another
// copy (or a dead tracker) stored: one whose instances discovery counts up
// is announced ready under the other copy's cause, one past its deadline
// fails; both entries are gone afterwards.
func TestPendingGroupsOfAnotherCopy(t *testing.T) {
	r := newRig(t)
	r.command(events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Version: "v1", Capacity: 2})
	r.await(events.ServerGroupReady)
	kv, err := r.js.KeyValue(r.ctx, topology.BucketReleases)
	if err != nil {
		t.Fatal(err)
	}
	put := func(group, cause string, desired int, deadline time.Time) {
		b, _ := json.Marshal(map[string]any{"service": "hello", "group": group, "deadline": deadline, "desired": desired, "cause": cause})
		if _, err := kv.Put(r.ctx, "pending."+group, b); err != nil {
			t.Fatal(err)
		}
	}
	put("hello-v001", "other-copy", 2, time.Now().Add(time.Minute))
	put("hello-v009", "dead-copy", 1, time.Now().Add(-time.Second))
	var ready, failed events.Event
	for ready.ID == "" || failed.ID == "" {
		m, err := r.tap.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("ready %q, failed %q: %v", ready.ID, failed.ID, err)
		}
		ev, err := events.Decode(m.Data)
		if err != nil {
			continue
		}
		switch ev.Type {
		case events.ServerGroupReady.Type():
			ready = ev
		case events.ServerGroupFailed.Type():
			failed = ev
		}
	}
	var d events.ServerGroup
	if ready.DecodeData(&d); ready.ID != "other-copy:ready" || d.Group != "hello-v001" || d.Up != 2 {
		t.Fatalf("ready %s %+v", ready.ID, d)
	}
	if failed.DecodeData(&d); d.Group != "hello-v009" || !strings.Contains(d.Reason, "0 of 1 up") {
		t.Fatalf("failed %s %+v", failed.ID, d)
	}
	for _, g := range []string{"hello-v001", "hello-v009"} {
		for {
			if _, err := kv.Get(r.ctx, "pending."+g); errors.Is(err, jetstream.ErrKeyNotFound) {
				break
			}
			if r.ctx.Err() != nil {
				t.Fatalf("pending.%s stays in the bucket", g)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// startHosts runs a local provisioner for each host on s, each with its
// own data directory, until they have all said they are alive; it returns
// each one's stop.
func startHosts(t *testing.T, s *testkit.Server, names ...string) map[string]func() {
	t.Helper()
	ctx := testkit.Context(t, 30*time.Second)
	js, _ := jetstream.New(s.Conn(t))
	releases, _ := js.KeyValue(ctx, topology.BucketReleases)
	stops := map[string]func(){}
	for _, host := range names {
		cfg := provisioner.DefaultConfig()
		cfg.DataDir, cfg.Host, cfg.StopInstancesOnExit = t.TempDir(), host, true
		cfg.Local = local.Config{StartupProbe: 50 * time.Millisecond, GracePeriod: time.Second, BackoffBase: 50 * time.Millisecond}
		runCtx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- provisioner.New(cfg, s.Conn(t), logging.Nop()).Run(runCtx) }()
		var once sync.Once
		stop := func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		stops[host] = stop
	}
	for _, host := range names {
		for { // alive
			if _, err := releases.Get(ctx, release.HostKey(host)); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("host %s never said it is alive", host)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return stops
}

// TestTwoHosts: two local provisioners, hosts a and b, share the commands.
// A group created for b runs on b whichever of them takes the command,
// and is announced ready (by the one tracking); once b stops, a command
// for b's group fails loudly, naming b, rather than as "no such group".
func TestTwoHosts(t *testing.T) {
	s := testkit.Start(t)
	ctx := testkit.Context(t, 60*time.Second)
	nc := s.Conn(t)
	js, _ := jetstream.New(nc)
	kv, _ := js.KeyValue(ctx, topology.BucketServices)
	spec.Apply(ctx, kv, spec.Service{Name: "hello", Owner: "t", Capacity: 1, MaxCapacity: 5,
		Health:   spec.Health{Path: "/healthz", Interval: spec.Duration(100 * time.Millisecond), HealthyThreshold: 2, UnhealthyThreshold: 2},
		Artifact: spec.Artifact{Command: []string{hello}}})
	tap, _ := nc.SubscribeSync("fleet.>")
	stops := startHosts(t, s, "a", "b")
	stopB := stops["b"]
	r := &rig{t: t, ctx: ctx, nc: nc, js: js, tap: tap}
	releases, _ := js.KeyValue(ctx, topology.BucketReleases)
	r.command(events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Version: "v1", Capacity: 1, Host: "b"})
	var d events.ServerGroup
	r.await(events.ServerGroupReady).DecodeData(&d)
	if d.Group != "hello-v001" || d.Up != 1 {
		t.Fatalf("ready %+v", d)
	}
	e, err := releases.Get(ctx, release.OwnerKey("hello-v001"))
	if err != nil || !strings.Contains(string(e.Value()), `"host":"b"`) {
		t.Fatalf("owner of hello-v001: %v", err)
	}
	stopB()
	r.command(events.ServerGroupResize, events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Capacity: 2})
	for {
		ev := r.awaitAny(events.ServerGroupFailed)
		ev.DecodeData(&d)
		if d.Group == "hello-v001" {
			break
		}
	}
	if !strings.Contains(d.Reason, "host b") || strings.Contains(d.Reason, "no such group") {
		t.Fatalf("a command for the stopped host's group failed with %q", d.Reason)
	}
}

// TestStatefulRollStaysOnItsHost: a rolling release's new group runs on
// the host of the previous one, where the slots' volumes are, even when
// hosts.Place would put a group of its name on the other host. (Placed
// there, a moved slot would start on an empty volume.)
func TestStatefulRollStaysOnItsHost(t *testing.T) {
	s := testkit.Start(t)
	ctx := testkit.Context(t, 60*time.Second)
	nc := s.Conn(t)
	js, _ := jetstream.New(nc)
	services, _ := js.KeyValue(ctx, topology.BucketServices)
	store := spec.Service{Name: "store", Owner: "t", Capacity: 2,
		Health:   spec.Health{Path: "/healthz", Interval: spec.Duration(100 * time.Millisecond), HealthyThreshold: 1, UnhealthyThreshold: 2},
		Artifact: spec.Artifact{Command: []string{hello}},
		Strategy: spec.Strategy{Type: spec.StrategyRolling, Rolling: spec.Rolling{MaxUnavailable: "1"}}}
	if _, err := spec.Apply(ctx, services, store); err != nil {
		t.Fatal(err)
	}
	tap, _ := nc.SubscribeSync("fleet.>")
	startHosts(t, s, "a", "b")
	r := &rig{t: t, ctx: ctx, nc: nc, js: js, tap: tap}
	ev, _ := events.New("test", events.ServerGroupCreate, "store", "", events.ServerGroupCommand{Service: "store", Group: "store-v001", Version: "v1",
		Capacity: 2, Host: "b", Stateful: true, Slots: []int{0, 1}, SlotCount: 2})
	cmd, _ := ev.Encode()
	if err := nc.Publish(events.ServerGroupCreate.Subject("store"), cmd); err != nil {
		t.Fatal(err)
	}
	r.await(events.ServerGroupReady)

	group := ""
	for i := 2; group == ""; i++ {
		if name := fmt.Sprintf("store-v%03d", i); hosts.Place(name, []string{"a", "b"}) == "a" {
			group = name
		}
	}
	releases, _ := js.KeyValue(ctx, topology.BucketReleases)
	rec := release.Record{ID: "r-store-2", Service: "store", Version: "v2", Group: group, Previous: "store-v001", Phase: release.PhaseAccepted,
		Strategy: spec.StrategyRolling, Artifact: events.Artifact{Command: []string{hello}}}
	b, _ := json.Marshal(rec)
	if _, err := releases.Create(ctx, release.RecordKey(rec.ID), b); err != nil {
		t.Fatal(err)
	}
	for {
		e, err := releases.Get(ctx, release.OwnerKey(group))
		if err == nil {
			if !strings.Contains(string(e.Value()), `"host":"b"`) {
				t.Fatalf("%s runs on another host than store-v001's (b): %s", group, e.Value())
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%s was never made: %v", group, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

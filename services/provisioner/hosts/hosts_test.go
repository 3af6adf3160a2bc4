package hosts_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/fleettest"
	"github.com/redblack/redblack/services/provisioner/hosts"
	"github.com/redblack/redblack/services/provisioner/local"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

var hello string

func TestMain(m *testing.M) { testkit.MainWithHello(m, &hello) }

var fast = spec.Health{Path: "/healthz", Interval: spec.Duration(100 * time.Millisecond), HealthyThreshold: 2, UnhealthyThreshold: 2}

// twoHosts is two local providers, "a" and "b", each served on the
// embedded server as its host, and a Provider seen from a.
type twoHosts struct {
	a, b  *local.Local
	fromA *hosts.Provider
	stopB func()
}

func newTwoHosts(t *testing.T) *twoHosts {
	t.Helper()
	s := testkit.Start(t)
	js := s.JS(t)
	ctx := testkit.Context(t, 10*time.Second)
	kv, err := js.KeyValue(ctx, topology.BucketReleases)
	if err != nil {
		t.Fatal(err)
	}
	cfg := func() local.Config {
		return local.Config{Dir: t.TempDir(), GracePeriod: 2 * time.Second, StartupProbe: 50 * time.Millisecond, BackoffBase: 50 * time.Millisecond}
	}
	a, err := local.Open(cfg(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(true) })
	b, err := local.Open(cfg(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(true) })
	serve := func(host string, p fleet.Provider) func() {
		sctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := hosts.Serve(sctx, s.Conn(t), kv, host, p, logging.Nop()); err != nil {
				t.Error(err)
			}
		}()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)
		return stop
	}
	serve("a", a)
	stopB := serve("b", b)
	h := &twoHosts{a: a, b: b, stopB: stopB,
		fromA: &hosts.Provider{NC: s.Conn(t), KV: kv, Self: "a", Local: a}}
	for { // b has said it is alive
		alive, err := h.fromA.Alive(ctx)
		if err == nil && len(alive) == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("b never alive: %v %v", alive, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return h
}

// onHost places every group it creates on one host.
type onHost struct {
	*hosts.Provider
	host string
}

func (o onHost) CreateGroup(ctx context.Context, s fleet.GroupSpec) (fleet.Group, error) {
	s.Host = o.host
	return o.Provider.CreateGroup(ctx, s)
}

// TestRemoteHostBehavesAsAProvider: the provider suite, run from host a
// against groups that live on host b, over NATS.
func TestRemoteHostBehavesAsAProvider(t *testing.T) {
	fleettest.Run(t, func(t *testing.T) fleettest.Harness {
		h := newTwoHosts(t)
		return fleettest.Harness{Provider: onHost{h.fromA, "b"}, Artifact: events.Artifact{Command: []string{hello}}, Health: fast}
	})
}

// TestGroupsLiveOnTheirHost: a group named for b runs under b's provider
// and not a's; groups named for no host spread over both, each where
// Place puts it; a host not alive is refused by name.
func TestGroupsLiveOnTheirHost(t *testing.T) {
	h := newTwoHosts(t)
	ctx := testkit.Context(t, 30*time.Second)
	sp := func(group, host string) fleet.GroupSpec {
		return fleet.GroupSpec{Service: "hello", Group: group, Version: "v1", Capacity: 1,
			Artifact: events.Artifact{Command: []string{hello}}, Health: fast, Host: host}
	}
	if _, err := h.fromA.CreateGroup(ctx, sp("hello-v001", "b")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.b.DescribeGroup(ctx, "hello-v001"); err != nil {
		t.Fatalf("b does not run the group named for it: %v", err)
	}
	if _, err := h.a.DescribeGroup(ctx, "hello-v001"); !errors.Is(err, fleet.ErrGroupNotFound) {
		t.Fatalf("a runs b's group too: %v", err)
	}
	if owner, err := h.fromA.OwnerOf(ctx, "hello-v001"); err != nil || owner != "b" {
		t.Fatalf("owner %q %v", owner, err)
	}
	used := map[string]int{}
	for i := 2; i <= 7; i++ {
		name := fmt.Sprintf("hello-v%03d", i)
		if _, err := h.fromA.CreateGroup(ctx, sp(name, "")); err != nil {
			t.Fatal(err)
		}
		want := hosts.Place(name, []string{"a", "b"})
		local := map[string]*local.Local{"a": h.a, "b": h.b}[want]
		if _, err := local.DescribeGroup(ctx, name); err != nil {
			t.Fatalf("%s: not on %s, where Place puts it: %v", name, want, err)
		}
		used[want]++
	}
	if used["a"] == 0 || used["b"] == 0 {
		t.Fatalf("six groups all on one host: %v", used)
	}
	groups, err := h.fromA.ListGroups(ctx, "hello")
	if err != nil || len(groups) != 7 {
		t.Fatalf("list from a: %d groups, %v", len(groups), err)
	}
	if _, err := h.fromA.CreateGroup(ctx, sp("hello-v008", "c")); !errors.Is(err, hosts.ErrNoHost) || !strings.Contains(err.Error(), "c") {
		t.Fatalf("a group for an unknown host: %v", err)
	}
}

// TestCommandsForADeadHostFailLoudly: once b stops, every call for b's
// group fails with ErrHostDown naming b — a destroy too, which must not
// pass for "nothing to destroy" — and a listing that would miss b's
// groups is an error; a group no host owns is still "no such group".
func TestCommandsForADeadHostFailLoudly(t *testing.T) {
	h := newTwoHosts(t)
	ctx := testkit.Context(t, 30*time.Second)
	if _, err := h.fromA.CreateGroup(ctx, fleet.GroupSpec{Service: "hello", Group: "hello-v001", Version: "v1", Capacity: 1,
		Artifact: events.Artifact{Command: []string{hello}}, Health: fast, Host: "b"}); err != nil {
		t.Fatal(err)
	}
	fleettest.WaitUp(t, h.fromA, "hello-v001", 1, 20*time.Second)
	h.stopB()
	// the calls get their own deadline: on a loaded machine the start above
	// can take most of the first one, and a call cut by it proves nothing
	ctx = testkit.Context(t, 30*time.Second)
	calls := map[string]func() error{
		"describe":  func() error { _, err := h.fromA.DescribeGroup(ctx, "hello-v001"); return err },
		"resize":    func() error { return h.fromA.Resize(ctx, "hello-v001", 2) },
		"destroy":   func() error { return h.fromA.DestroyGroup(ctx, "hello-v001") },
		"terminate": func() error { return h.fromA.TerminateInstance(ctx, "hello-v001", "hello-v001-1") },
		"list":      func() error { _, err := h.fromA.ListGroups(ctx, "hello"); return err },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, hosts.ErrHostDown) || !strings.Contains(err.Error(), "b") {
			t.Errorf("%s of b's group with b stopped: %v, want ErrHostDown naming b", name, err)
		}
	}
	if _, err := h.fromA.DescribeGroup(ctx, "hello-v099"); !errors.Is(err, fleet.ErrGroupNotFound) {
		t.Fatalf("a group nobody owns: %v", err)
	}
}

// TestPlaceIsStable: Place gives a name the same host whatever the order
// of the hosts, and a host's departure moves only its own groups.
func TestPlaceIsStable(t *testing.T) {
	moved := 0
	for i := range 200 {
		g := fmt.Sprintf("svc-v%03d", i)
		p3 := hosts.Place(g, []string{"a", "b", "c"})
		if p := hosts.Place(g, []string{"c", "a", "b"}); p != p3 {
			t.Fatalf("%s: %s or %s by the order of the hosts", g, p3, p)
		}
		p2 := hosts.Place(g, []string{"a", "b"})
		if p3 != "c" && p2 != p3 {
			t.Fatalf("%s moved from %s to %s when c left", g, p3, p2)
		}
		if p3 == "c" {
			moved++
		}
	}
	if moved < 30 || moved > 110 {
		t.Fatalf("c had %d of 200 groups, want about a third", moved)
	}
}

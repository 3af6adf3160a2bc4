package routing

import (
	"fmt"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/routes"
)

func input(weights map[string]int, perGroup int) Input {
	in := Input{Routes: map[string]routes.Route{"hello": {Service: "hello", Weights: weights}}, Revisions: map[string]uint64{"hello": 7},
		Instances: map[string]discovery.Entry{}, Hostnames: map[string][]string{"hello": {"Hello.Example.com"}}}
	for g := range weights {
		for i := range perGroup {
			id := fmt.Sprintf("%s-%d", g, i)
			in.Instances[discovery.Key("hello", g, id)] = discovery.Entry{ID: id, Service: "hello", Group: g, Address: fmt.Sprintf("127.0.0.1:%d", 1000+i), State: discovery.StateUp}
		}
	}
	return in
}

// Weights are honoured: a chi-square test over 1,000,000 picks. The
// threshold is p = 1e-6 (2 degrees of freedom: exp(-x/2) = 1e-6 at 27.63),
// so an honest picker fails it once in a million runs (at p = 0.001 CI saw
// it fail on chance), while a bias of one point in a weight (61/29/10)
// gives a chi-square near 500.
func TestWeightsChiSquare(t *testing.T) {
	weights := map[string]int{"a": 600, "b": 300, "c": 100, "d": 0}
	tbl := NewRegistry().Build(input(weights, 1))
	s := tbl.Lookup("hello")
	counts := map[string]float64{}
	const n = 1000000
	for range n {
		counts[s.PickGroup().Name]++
	}
	if counts["d"] != 0 {
		t.Fatalf("weight-0 group got %v requests", counts["d"])
	}
	chi := 0.0
	for g, w := range map[string]float64{"a": 0.6, "b": 0.3, "c": 0.1} {
		e := w * n
		chi += (counts[g] - e) * (counts[g] - e) / e
	}
	if chi > 27.63 {
		t.Fatalf("chi-square %.2f > 27.63: counts %v", chi, counts)
	}
}

func TestLookupHosts(t *testing.T) {
	tbl := NewRegistry().Build(input(map[string]int{"a": 1000}, 1))
	for _, h := range []string{"hello", "hello:8080", "hello.localhost", "hello.localhost:80", "hello.example.com", "HELLO.example.com"} {
		if s := tbl.Lookup(h); s == nil || s.Name != "hello" || s.Revision != 7 {
			t.Errorf("Lookup(%q) = %v", h, s)
		}
	}
	if tbl.Lookup("other") != nil {
		t.Error("unknown host routed")
	}
}

// TestLookupLookAlikes: every spelling a client can send of a name routes
// to the service that claims it, and only there (issue 28: "Host: other."
// reached another team's service, which claimed "other." beside "other").
func TestLookupLookAlikes(t *testing.T) {
	in := input(map[string]int{"a": 1000}, 1)
	in.Routes["other"] = routes.Route{Service: "other", Weights: map[string]int{"o": 1000}}
	in.Instances[discovery.Key("other", "o", "o-1")] = discovery.Entry{ID: "o-1", Service: "other", Group: "o", Address: "127.0.0.1:2001", State: discovery.StateUp}
	tbl := NewRegistry().Build(in)
	for host, want := range map[string]string{
		"other.": "other", "other.localhost.": "other", "OTHER": "other", "other.:8080": "other", "ｏｔｈｅｒ": "other",
		"hello.example.com.": "hello", "Hello.Example.Com.:443": "hello", "ｈｅｌｌｏ.example.com": "hello",
	} {
		s := tbl.Lookup(host)
		if s == nil || s.Name != want {
			t.Errorf("Lookup(%q) = %v, want %s", host, s, want)
		}
		if b := tbl.LookupBytes([]byte(host)); b != s {
			t.Errorf("LookupBytes(%q) = %v, Lookup %v", host, b, s)
		}
	}
	for _, host := range []string{"other..", "", ".", "nobody."} {
		if s := tbl.Lookup(host); s != nil {
			t.Errorf("Lookup(%q) routed to %s", host, s.Name)
		}
	}
}

func TestOnlyUpInstancesAndIdentityAcrossTables(t *testing.T) {
	reg := NewRegistry()
	in := input(map[string]int{"a": 1000}, 3)
	in.Instances[discovery.Key("hello", "a", "a-1")] = discovery.Entry{ID: "a-1", Service: "hello", Group: "a", Address: "127.0.0.1:1001", State: discovery.StateStarting}
	t1 := reg.Build(in)
	if n := len(t1.Services["hello"].All["a"].Backends); n != 2 {
		t.Fatalf("%d backends, want the 2 up ones", n)
	}
	t2 := reg.Build(in)
	if t1.Services["hello"].All["a"].Backends[0] != t2.Services["hello"].All["a"].Backends[0] {
		t.Fatal("a backend lost its identity across tables")
	}
}

func TestPickPrefersFewerOutstanding(t *testing.T) {
	g := NewRegistry().Build(input(map[string]int{"a": 1000}, 2)).Services["hello"].All["a"]
	busy, idle := g.Backends[0], g.Backends[1]
	busy.Inflight.Store(10)
	for range 1000 {
		if g.Pick(nil) != idle {
			t.Fatal("picked the busier backend of two")
		}
	}
}

func TestEjectionAndPanicRouting(t *testing.T) {
	g := NewRegistry().Build(input(map[string]int{"a": 1000}, 4)).Services["hello"].All["a"]
	bad := g.Backends[0]
	for range 5 {
		bad.Result(true, 5, time.Hour)
	}
	for range 1000 {
		if g.Pick(nil) == bad {
			t.Fatal("picked an ejected backend")
		}
	}
	// eject more than half: panic routing uses all of them again
	for _, b := range g.Backends[1:3] {
		for range 5 {
			b.Result(true, 5, time.Hour)
		}
	}
	seen := map[*Backend]bool{}
	for range 2000 {
		seen[g.Pick(nil)] = true
	}
	if len(seen) != 4 {
		t.Fatalf("panic routing reached %d of 4 backends", len(seen))
	}
	// recovery: an ejection that has expired ends at the next success
	b := g.Backends[3]
	for range 5 {
		b.Result(true, 5, time.Nanosecond)
	}
	time.Sleep(time.Millisecond)
	b.Result(false, 5, time.Nanosecond)
	if b.Ejected(time.Now().UnixNano()) || b.ejections.Load() != 0 {
		t.Fatal("backend did not recover")
	}
}

func TestPickAllocatesNothing(t *testing.T) {
	s := NewRegistry().Build(input(map[string]int{"a": 500, "b": 500}, 8)).Lookup("hello")
	allocs := testing.AllocsPerRun(1000, func() {
		if g := s.PickGroup(); g.Pick(nil) == nil {
			t.Fatal("nil")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per pick", allocs)
	}
}

func BenchmarkPick(b *testing.B) {
	s := NewRegistry().Build(input(map[string]int{"a": 500, "b": 500}, 8)).Lookup("hello")
	b.ReportAllocs()
	for b.Loop() {
		s.PickGroup().Pick(nil)
	}
}

// TestRegistryForgetsGoneInstances: a backend whose entry left discovery is
// marked gone and, once nothing is in flight on it, forgotten; one still
// listed or busy is kept.
func TestRegistryForgetsGoneInstances(t *testing.T) {
	r := NewRegistry()
	entry := func(id, addr string) discovery.Entry {
		return discovery.Entry{ID: id, Service: "hello", Group: "hello-v001", Address: addr, State: discovery.StateUp}
	}
	rt := map[string]routes.Route{"hello": {Weights: map[string]int{"hello-v001": routes.MaxWeight}}}
	r.Build(Input{Routes: rt, Instances: map[string]discovery.Entry{"a": entry("a", "127.0.0.1:1"), "b": entry("b", "127.0.0.1:2")}})
	if n := len(r.Backends()); n != 2 {
		t.Fatalf("%d backends", n)
	}
	r.Build(Input{Routes: rt, Instances: map[string]discovery.Entry{"b": entry("b", "127.0.0.1:2")}})
	var a, b *Backend
	for _, x := range r.Backends() {
		if x.ID == "a" {
			a = x
		} else {
			b = x
		}
	}
	if !a.Gone() || b.Gone() {
		t.Fatalf("gone: a %v b %v", a.Gone(), b.Gone())
	}
	if r.Forget(b) {
		t.Fatal("a listed backend was forgotten")
	}
	a.Inflight.Add(1)
	if r.Forget(a) {
		t.Fatal("a backend with a request in flight was forgotten")
	}
	a.Inflight.Add(-1)
	if !r.Forget(a) || len(r.Backends()) != 1 {
		t.Fatalf("the gone backend stays: %d backends", len(r.Backends()))
	}
}

// A weighted group with no instance in the table gives its share to the
// weighted groups that have some; a weight-0 group does not take it, but
// for the route's previous group when no weighted group is served; with
// none at all the pick still names one (its request fails with the
// reason).
func TestEmptyWeightedGroupGivesItsShare(t *testing.T) {
	in := input(map[string]int{"a": 600, "b": 200, "c": 200, "old": 0}, 1)
	for k, e := range in.Instances {
		if e.Group == "c" {
			delete(in.Instances, k)
		}
	}
	s := NewRegistry().Build(in).Lookup("hello")
	counts := map[string]int{}
	for range 10000 {
		counts[s.PickGroup().Name]++
	}
	if counts["c"] != 0 || counts["old"] != 0 || counts["a"] == 0 || counts["b"] == 0 {
		t.Fatalf("picks %v: want a and b only", counts)
	}
	if g := s.All["c"]; g == nil || g.Weight != 200 {
		t.Fatalf("the empty group is still listed with its weight: %+v", g)
	}
	none := input(map[string]int{"a": 1000, "old": 0}, 0)
	if g := NewRegistry().Build(none).Lookup("hello").PickGroup(); g == nil || g.Name != "a" || len(g.Backends) != 0 {
		t.Fatalf("no group served: picked %+v, want a, empty", g)
	}
	// just switched, and this table has none of the new group's instances
	// yet: the previous group, alive, answers
	sw := input(map[string]int{"new": 1000, "old": 0, "older": 0}, 1)
	sw.Routes["hello"] = routes.Route{Service: "hello", Weights: sw.Routes["hello"].Weights, Active: "new", Previous: "old"}
	sw.Settling = map[string]bool{"hello": true}
	for k, e := range sw.Instances {
		if e.Group == "new" {
			delete(sw.Instances, k)
		}
	}
	s = NewRegistry().Build(sw).Lookup("hello")
	for range 1000 {
		if g := s.PickGroup(); g == nil || g.Name != "old" {
			t.Fatalf("after a switch this table cannot serve: picked %+v, want the previous group", g)
		}
	}
	if s.All["old"].Weight != 0 || s.All["new"].Weight != 1000 {
		t.Fatal("the route's weights are reported as they are")
	}
	// settled, the empty group fails its requests, as users and the
	// watchdog must see
	sw.Settling = nil
	if g := NewRegistry().Build(sw).Lookup("hello").PickGroup(); g == nil || g.Name != "new" {
		t.Fatalf("a settled route picked %+v, want the empty new group", g)
	}
}

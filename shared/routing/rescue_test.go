package routing

import (
	"testing"
)

// The fallback of each phase, read from the route: production during a
// canary, the previous group once one group takes all and the previous one
// is alive, none when it is gone.
func TestFallbackOfEachPhase(t *testing.T) {
	fallback := func(weights map[string]int, active, previous string, drop ...string) string {
		in := input(weights, 2)
		rt := in.Routes["hello"]
		rt.Active, rt.Previous = active, previous
		in.Routes["hello"] = rt
		for _, g := range drop { // the group's instances are gone
			for k, e := range in.Instances {
				if e.Group == g {
					delete(in.Instances, k)
				}
			}
		}
		f := NewRegistry().Build(in).Services["hello"].Fallback
		if f == nil {
			return ""
		}
		return f.Name
	}
	canary := map[string]int{"v1": 600, "v2-baseline": 200, "v2-canary": 200}
	baked := map[string]int{"v1": 0, "v2": 1000}
	for _, c := range []struct {
		what, got, want string
	}{
		{"canary", fallback(canary, "v1", ""), "v1"},
		{"canary, production gone", fallback(canary, "v1", "", "v1"), ""},
		{"bake", fallback(baked, "v2", "v1"), "v1"},
		{"bake, the old group keeping its reference slice", fallback(map[string]int{"v1": 100, "v2": 900}, "v2", "v1"), "v1"},
		{"after the old group is destroyed", fallback(baked, "v2", "v1", "v1"), ""},
		{"no previous group", fallback(map[string]int{"v2": 1000}, "v2", ""), ""},
	} {
		if c.got != c.want {
			t.Errorf("%s: fallback %q, want %q", c.what, c.got, c.want)
		}
	}
}

// The budget: the fallback serves at most ratio × the service's requests
// plus the burst, its own requests first.
func TestBudget(t *testing.T) {
	b := NewBudget()
	rescued := 0
	for range 1000 { // a dead new group takes all: every request wants a rescue
		b.Deposit(0.5)
		if b.TrySpend() {
			rescued++
		}
	}
	// the burst and half of the requests (less the half request a deposit
	// into the full bucket drops)
	if rescued < rescueBurst+499 || rescued > rescueBurst+500 {
		t.Fatalf("%d rescued of 1000 at 0.5, want %d", rescued, rescueBurst+500)
	}
	b = NewBudget()
	rescued = 0
	for i := range 1000 { // a canary: the fallback's own half comes first
		b.Deposit(1.2)
		if i%2 == 0 {
			b.Spend()
		} else if b.TrySpend() {
			rescued++
		}
	}
	if rescued != 500 {
		t.Fatalf("a canary's 500 failures at 1.2 with production's own 500: %d rescued", rescued)
	}
	for range 10 * rescueBurst { // direct traffic alone drains it, boundedly
		b.Spend()
	}
	if b.TrySpend() {
		t.Fatal("a rescue with the budget spent")
	}
	b.Deposit(float64(rescueBurst) + 1)
	if !b.TrySpend() {
		t.Fatal("the budget did not come back from its floor")
	}
}

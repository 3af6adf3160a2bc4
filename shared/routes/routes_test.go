package routes

import "testing"

func TestRestore(t *testing.T) {
	base := func() Route {
		return Route{Service: "hello", Active: "hello-v002", Previous: "hello-v001",
			Weights: map[string]int{"hello-v001": 0, "hello-v002": MaxWeight, "hello-v003-canary": 100, "hello-v003-baseline": 100}}
	}
	cases := []struct {
		name         string
		route        Route
		gone         []string
		target       string
		active, prev string
	}{
		{"by hand: swap", base(), nil, "hello-v001", "hello-v001", "hello-v002"},
		{"rollback from the canary: production keeps it", base(), []string{"hello-v003-canary", "hello-v003-baseline", "hello-v003"}, "hello-v002", "hello-v002", "hello-v001"},
		{"rollback in the bake: back to the previous, the release's group never kept", base(), []string{"hello-v002"}, "hello-v001", "hello-v001", ""},
	}
	for _, c := range cases {
		r := c.route
		got, err := r.Restore(c.gone...)
		if err != nil || got != c.target || r.Active != c.active || r.Previous != c.prev {
			t.Errorf("%s: %q %v; active %q previous %q", c.name, got, err, r.Active, r.Previous)
		}
		for g, w := range r.Weights {
			if want := map[bool]int{true: MaxWeight, false: 0}[g == c.target]; w != want {
				t.Errorf("%s: weight of %s %d", c.name, g, w)
			}
		}
	}
	first := Route{Service: "hello", Active: "hello-v001", Weights: map[string]int{"hello-v001": MaxWeight}}
	if _, err := first.Restore("hello-v001"); err == nil || first.Weights["hello-v001"] != MaxWeight {
		t.Fatalf("a first release restored to nothing: %v %+v", err, first)
	}
}

func TestHas(t *testing.T) {
	r := Route{Weights: map[string]int{"a": 700, "b": 300, "c": 0}}
	if !r.Has(map[string]int{"a": 700, "b": 300}) || !r.Has(map[string]int{"c": 0, "d": 0}) || !r.Has(nil) {
		t.Fatal("weights it has were not found")
	}
	if r.Has(map[string]int{"a": 700, "b": 0}) || r.Has(map[string]int{"d": 1}) {
		t.Fatal("weights it has not were found")
	}
}

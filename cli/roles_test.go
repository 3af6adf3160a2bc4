package cli

import (
	"testing"

	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
)

// TestRoleOf: fleet ls names each group's role from the route and the
// release in flight (issue 29: the active and the kept group were both
// "production").
func TestRoleOf(t *testing.T) {
	rt := routes.Route{Active: "hello-v002", Previous: "hello-v001",
		Weights: map[string]int{"hello-v002": 600, "hello-v001": 0, "hello-v003-canary": 200, "hello-v003-baseline": 200}}
	canary := &release.Record{Group: "hello-v003", Canary: "hello-v003-canary", Baseline: "hello-v003-baseline", Phase: release.PhaseCanary}
	launching := &release.Record{Group: "hello-v003", Phase: release.PhaseLaunching}
	rollingBack := &release.Record{Group: "hello-v003", Phase: release.PhaseRollingBack}
	for _, c := range []struct {
		group    string
		inflight *release.Record
		want     string
	}{
		{"hello-v002", canary, RoleActive},
		{"hello-v001", canary, RoleKept},
		{"hello-v003-canary", canary, RoleCanary},
		{"hello-v003-baseline", canary, RoleBaseline},
		{"hello-v003", launching, RoleNew},
		{"hello-v003", rollingBack, RoleDraining},
		{"hello-v003-canary", launching, RoleDraining}, // its phase is over
		{"hello-v000", nil, RoleDraining},
		{"hello-v001", nil, RoleKept},
	} {
		if got := roleOf(c.group, rt, c.inflight); got != c.want {
			t.Errorf("%s (in flight %+v): %s, want %s", c.group, c.inflight, got, c.want)
		}
	}
	// baking: the previous group keeps the bake's reference slice
	baking := routes.Route{Service: "hello", Active: "hello-v003", Previous: "hello-v002", Weights: map[string]int{"hello-v003": 900, "hello-v002": 100}}
	if got := roleOf("hello-v002", baking, &release.Record{Group: "hello-v003", Phase: release.PhaseBaking}); got != RoleReference {
		t.Errorf("the old group during a bake: %s, want %s", got, RoleReference)
	}
}

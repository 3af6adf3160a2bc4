package cli

import (
	"context"
	"errors"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/topology"
)

// The roles fleet ls names, from the route and the release in flight (a
// group's spec says only production, canary or baseline).
const (
	// RoleActive has the traffic.
	RoleActive = "active"
	// RoleKept is the previous group, kept at weight 0 for a rollback.
	RoleKept = "kept"
	// RoleReference is the previous group while it keeps a slice of the
	// traffic during a bake: the bake's same-time reference.
	RoleReference = "reference"
	// RoleCanary and RoleBaseline are the release in flight's canary
	// phase groups.
	RoleCanary   = "canary"
	RoleBaseline = "baseline"
	// RoleNew is the release in flight's new group, before its switch.
	RoleNew = "new"
	// RoleDraining is any other group: no traffic, and on its way out
	// (a rolled back group, a canary after its phase, an older group).
	RoleDraining = "draining"
)

// groupWithRole is a group in fleet ls --json.
type groupWithRole struct {
	fleet.Group
	Role string `json:"role"`
}

// fleetRoles names each group's role (see the Role constants).
func fleetRoles(ctx context.Context, c *client, groups []fleet.Group) ([]string, error) {
	rts, err := c.kv(ctx, topology.BucketRoutes)
	if err != nil {
		return nil, err
	}
	rel, err := c.kv(ctx, topology.BucketReleases)
	if err != nil {
		return nil, err
	}
	store := release.Store{KV: rel}
	type state struct {
		route    routes.Route
		inflight *release.Record
	}
	states := map[string]*state{}
	out := make([]string, len(groups))
	for i, g := range groups {
		svc := g.Spec.Service
		st := states[svc]
		if st == nil {
			st = &state{}
			if r, _, err := routes.Get(ctx, rts, svc); err == nil {
				st.route = r
			} else if !errors.Is(err, routes.ErrNotFound) {
				return nil, err
			}
			if lock, _, err := store.Lock(ctx, svc); err == nil {
				if rec, _, err := store.Get(ctx, lock.Release); err == nil {
					st.inflight = &rec
				}
			} else if !errors.Is(err, release.ErrNotFound) {
				return nil, err
			}
			states[svc] = st
		}
		out[i] = roleOf(g.Spec.Group, st.route, st.inflight)
	}
	return out, nil
}

// roleOf is a group's role given its service's route and release in
// flight (nil for none).
func roleOf(group string, rt routes.Route, inflight *release.Record) string {
	switch {
	case group == rt.Active:
		return RoleActive
	case inflight != nil && group == inflight.Canary:
		return RoleCanary
	case inflight != nil && group == inflight.Baseline:
		return RoleBaseline
	case inflight != nil && group == inflight.Group && inflight.Phase != release.PhaseRollingBack:
		return RoleNew
	case group == rt.Previous && rt.Weights[group] > 0:
		return RoleReference
	case group == rt.Previous:
		return RoleKept
	}
	return RoleDraining
}

// Package routes is the shape of the routes bucket: one routing record per
// service (weights 0–1000 per server group), written by the router with
// compare-and-set and watched by every router.
package routes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/kv"
)

// MaxWeight is the largest weight of a group.
const MaxWeight = 1000

// Route is a service's routing record. Groups with weight 0 are kept (a
// disabled group, ready to take traffic back) but get no requests.
type Route struct {
	Service string         `json:"service"`
	Weights map[string]int `json:"weights"`
	// Active is the group that took all traffic at the last switch.
	Active string `json:"active,omitempty"`
	// Previous is the group active before it (the rollback target).
	Previous string    `json:"previous,omitempty"`
	Changed  time.Time `json:"changed"`
	// Reason is why it last changed.
	Reason string `json:"reason,omitempty"`
}

// MaxGroups bounds the groups of one route: a release has at most a new
// group, a canary and a baseline beside production and the kept previous.
const MaxGroups = 16

// Validate checks weights and the route's size.
func (r Route) Validate() error {
	if len(r.Weights) > MaxGroups {
		return fmt.Errorf("routes: %d groups, at most %d", len(r.Weights), MaxGroups)
	}
	for g, w := range r.Weights {
		if w < 0 || w > MaxWeight {
			return fmt.Errorf("routes: weight %d of %s: want 0..%d", w, g, MaxWeight)
		}
	}
	return nil
}

// RestoreTarget is the group a restore gives all traffic to: the previous
// group if the active one is going (a manual restore: gone empty, or a
// rollback whose release's group has the traffic), the active one
// otherwise (a rollback from the canary: production gets its share back).
// It is "" when there is nothing to go back to.
func (r Route) RestoreTarget(gone ...string) string {
	if len(gone) == 0 || slices.Contains(gone, r.Active) {
		return r.Previous
	}
	return r.Active
}

// Restore is the one restore of a route, for a rollback and by hand: every
// weight goes to RestoreTarget(gone), which becomes active. By hand (gone
// empty) the group it replaces becomes the previous one (so the operator
// can switch back); in a rollback the release's groups (gone) get weight 0
// and are never kept as the previous group, since they are about to be
// destroyed. With nothing to go back to it changes nothing and says so.
func (r *Route) Restore(gone ...string) (string, error) {
	target := r.RestoreTarget(gone...)
	if target == "" {
		return "", fmt.Errorf("routes: %s has no group to restore to (active %q, previous %q)", r.Service, r.Active, r.Previous)
	}
	old := r.Active
	for g := range r.Weights {
		r.Weights[g] = 0
	}
	r.Weights[target] = MaxWeight
	r.Active = target
	switch {
	case len(gone) == 0:
		r.Previous = old
	case slices.Contains(gone, r.Previous) || r.Previous == target:
		r.Previous = ""
	}
	return target, nil
}

// Groups returns the group names sorted.
func (r Route) Groups() []string {
	out := make([]string, 0, len(r.Weights))
	for g := range r.Weights {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// Has reports whether the route gives each group in w exactly its weight
// there (other groups aside).
func (r Route) Has(w map[string]int) bool {
	for g, v := range w {
		if r.Weights[g] != v {
			return false
		}
	}
	return true
}

// Decode reads a stored route.
func Decode(b []byte) (Route, error) {
	var r Route
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("routes: %w", err)
	}
	// validated where it is read: the bucket is outside data
	return r, r.Validate()
}

// ErrNotFound: the service has no route yet.
var ErrNotFound = errors.New("no route")

// Get reads a service's route and its revision.
func Get(ctx context.Context, kv jetstream.KeyValue, service string) (Route, uint64, error) {
	e, err := kv.Get(ctx, service)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Route{Service: service, Weights: map[string]int{}}, 0, fmt.Errorf("routes: %s: %w", service, ErrNotFound)
	}
	if err != nil {
		return Route{}, 0, fmt.Errorf("routes: get %s: %w", service, err)
	}
	r, err := Decode(e.Value())
	return r, e.Revision(), err
}

// Update applies change to the service's route with compare-and-set,
// re-reading and re-deciding on a conflict. change may refuse by returning
// an error. It returns the stored route and its revision.
func Update(ctx context.Context, b jetstream.KeyValue, service string, change func(*Route) error) (Route, uint64, error) {
	return kv.Update(ctx, b, service, func(r *Route, _ bool) error {
		if r.Weights == nil {
			r.Weights = map[string]int{}
		}
		if err := change(r); err != nil {
			return err
		}
		if err := r.Validate(); err != nil {
			return err
		}
		r.Service, r.Changed = service, time.Now().UTC()
		return nil
	})
}

package provisioner

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
)

// ObserverRole is the lease role of the copy that observes a shared fleet
// (lease.provisioner-observer.fleet in the releases bucket).
const ObserverRole = "provisioner-observer"

// TrackerRole is the lease role of the local provisioner that tracks the
// groups not yet up, of every host (lease.provisioner-tracker.fleet).
const TrackerRole = "provisioner-tracker"

// observe watches a fleet every copy sees (the aws provider's) from one
// copy at a time, until ctx ends. The holder of the observer lease polls
// the provider and reports its changes, keeps discovery's entries alive
// and tracks the pending groups, whichever copy created them. The other
// copies act on commands and release steps all the same; they stand by
// for the lease, and one takes over within its TTL when the holder dies.
// A new observer starts its poll from what discovery holds, so the fleet
// is not reported again.
func (s *Service) observe(ctx context.Context) {
	s.lead(ctx, ObserverRole, func(ctx context.Context) error {
		known, err := s.discovered(ctx)
		if err != nil {
			return err
		}
		s.log.Info().Int("instances", len(known)).Msg("observing the fleet")
		s.tracking.Store(true)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); s.trackPending(ctx) }()
		go func() { defer wg.Done(); s.heartbeat(ctx) }()
		if k, ok := s.own.(fleet.Keeper); ok {
			wg.Add(1)
			go func() { defer wg.Done(); s.keep(ctx, k) }()
		}
		fleet.Poll(ctx, s.own, time.Second, known, func(c fleet.Change) { s.changes <- c })
		wg.Wait()
		return nil
	})
}

// keep keeps a Keeper's groups every second (their slots and volumes, on
// aws) until ctx ends, logging what it could not do (a new error once).
func (s *Service) keep(ctx context.Context, k fleet.Keeper) {
	last := ""
	for {
		kctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := k.Keep(kctx)
		cancel()
		if err != nil && err.Error() != last && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("keeping the stateful groups; trying again")
		}
		last = ""
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// lead runs task in this copy whenever it holds the lease of role (on
// "fleet"), until ctx ends: the other copies stand by, trying again every
// quarter of the lease's TTL.
func (s *Service) lead(ctx context.Context, role string, task func(ctx context.Context) error) {
	lease := release.Lease{KV: s.releases.KV, Role: role, Owner: release.NewOwner("provisioner")}
	for ctx.Err() == nil {
		err := lease.Hold(ctx, "fleet", task)
		if err != nil && ctx.Err() == nil && !errors.Is(err, release.ErrHeld) {
			s.log.Warn().Err(err).Str("role", role).Msg("lead; trying again")
		}
		select {
		case <-ctx.Done():
		case <-time.After(release.LeaseTTL / 4):
		}
	}
}

// discovered is what discovery holds of the fleet, by instance id: what
// the last observer reported.
func (s *Service) discovered(ctx context.Context) (map[string]fleet.Instance, error) {
	entries, err := natsx.Entries(ctx, s.instances)
	if err != nil {
		return nil, err
	}
	out := map[string]fleet.Instance{}
	for _, e := range entries {
		d, err := discovery.Decode(e.Value())
		if err != nil {
			continue
		}
		out[d.ID] = fleet.Instance{ID: d.ID, Service: d.Service, Group: d.Group, Version: d.Version, Address: d.Address,
			State: d.State, Started: d.Started, LastHealth: d.LastHealth}
	}
	return out, nil
}

package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// The router's release steps: the switch on cluster.ready, the restore on
// rollback.requested, canary.failed and calibrated (a calibration ends by
// the rollback path: its two groups lose their share and are torn down),
// and on baked the bake's reference slice back to the new group.
var releaseSteps = []events.Kind{events.ClusterReady, events.RollbackRequested, events.CanaryFailed, events.Calibrated, events.Baked}

func (s *Service) startReleases(ctx context.Context) (*natsx.Consumer, error) {
	filters := make([]string, len(releaseSteps))
	for i, k := range releaseSteps {
		filters[i] = k.Subject("*")
	}
	return natsx.Consume(ctx, s.js, natsx.ConsumerSpec{
		Stream: topology.StreamReleases, Durable: topology.DurableRouterReleases, FilterSubjects: filters,
		MaxDeliver: 20, AckWait: release.StepAckWait,
	}, release.Step(s.log, 20*time.Second, s.releaseStep), s.log)
}

func (s *Service) releaseStep(ctx context.Context, ev events.Event) error {
	k, _ := ev.Kind()
	switch k {
	case events.ClusterReady:
		var c events.Cluster
		if err := ev.DecodeData(&c); err != nil {
			return natsx.Permanent(err)
		}
		return s.switchRelease(ctx, ev.ID, ev.ReleaseID, c.Group)
	case events.RollbackRequested:
		var r events.Rollback
		if err := ev.DecodeData(&r); err != nil {
			return natsx.Permanent(err)
		}
		return s.rollback(ctx, k, ev.ID, ev.ReleaseID, fmt.Sprintf("%s (by %s)", r.Reason, r.By))
	case events.CanaryFailed:
		var r events.CanaryResult
		if err := ev.DecodeData(&r); err != nil {
			return natsx.Permanent(err)
		}
		return s.rollback(ctx, k, ev.ID, ev.ReleaseID, "canary failed: "+r.Reason)
	case events.Baked:
		return s.endReference(ctx, ev.ID, ev.ReleaseID)
	case events.Calibrated:
		var c events.Calibration
		if err := ev.DecodeData(&c); err != nil {
			return natsx.Permanent(err)
		}
		return s.rollback(ctx, k, ev.ID, ev.ReleaseID, fmt.Sprintf("calibration finished: passed %v, closest approach %.0f%% of the failure threshold (%s)", c.Passed, 100*c.Closest, c.ClosestMetric))
	}
	return natsx.Permanent(fmt.Errorf("router: %s is not a release step", ev.Type))
}

// switchRelease moves all traffic to the release's new group, guarded; a
// refusal becomes a rollback with the guard's reason.
func (s *Service) switchRelease(ctx context.Context, cause, id, group string) error {
	rec, err := s.releases.Update(ctx, id, func(r *release.Record) error {
		return r.Step(release.ByRouter, events.ClusterReady, time.Now())
	})
	if err != nil {
		return err
	}
	cmd := events.TrafficCommand{Service: rec.Service, Group: group}
	if old, slice, err := s.referenceSlice(ctx, rec, group); err != nil {
		return err
	} else if slice > 0 {
		cmd.Weights = map[string]int{old: slice}
	}
	why, err := s.command(ctx, cause, id, events.TrafficSwitch.Type(), cmd)
	if err != nil || why == "" {
		return err
	}
	return natsx.Emit(ctx, s.js, Source, events.DerivedID(id, events.RollbackRequested, 0)+":switch", events.RollbackRequested, rec.Service, id,
		events.Rollback{Service: rec.Service, Group: group, Reason: "switch refused: " + why, By: "router"})
}

// referenceSlice is the weight the group a release switches from keeps
// during its bake (spec bake.reference_weight, of routes.MaxWeight): the
// bake's same-time reference. None for a rolling release, a first
// release, or an old group with no instance up (the bake is then judged
// on its absolute rules alone).
func (s *Service) referenceSlice(ctx context.Context, rec release.Record, group string) (string, int, error) {
	if rec.IsRolling() {
		return "", 0, nil
	}
	old := s.routeOf(rec.Service).Active
	if old == "" || old == group {
		return "", 0, nil
	}
	svc, err := spec.Get(ctx, s.services, rec.Service)
	if err != nil {
		return "", 0, err
	}
	slice := svc.Strategy.Bake.Reference() * routes.MaxWeight / 100
	if slice == 0 {
		return "", 0, nil
	}
	up, err := discovery.Up(ctx, s.instances, rec.Service, old)
	if err != nil {
		return "", 0, err
	}
	if len(up) == 0 {
		s.log.Warn().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, rec.ID).Str(logging.FieldServerGroup, old).Msg("the old group has no instance up: no reference slice, the bake is judged on its absolute rules")
		return "", 0, nil
	}
	return old, slice, nil
}

// endReference gives the new group the bake's reference slice back once
// the release has baked: the old group keeps no traffic (the watch after
// completion is judged on its absolute rules). The provisioner completes
// the release only after this.
func (s *Service) endReference(ctx context.Context, cause, id string) error {
	rec, _, err := s.releases.Get(ctx, id)
	if err != nil {
		return err
	}
	route, _, err := routes.Get(ctx, s.routesKV, rec.Service)
	if err != nil && !errors.Is(err, routes.ErrNotFound) {
		return err // retried: the provisioner's completion waits for this
	}
	if err != nil || route.Active != rec.Group || route.Weights[rec.Group] == routes.MaxWeight {
		return nil // no route, another group active (rolled back), or no slice
	}
	change := func(r *routes.Route) error {
		cur, _, err := s.releases.Get(ctx, id)
		if err != nil {
			return err
		}
		if err := cur.Expect(release.PhaseBaking, release.PhaseCompleted); err != nil {
			return err // a rollback took the traffic back meanwhile
		}
		if r.Active != rec.Group {
			return fmt.Errorf("%w: %s is no longer active", release.ErrStale, rec.Group)
		}
		for g := range r.Weights {
			r.Weights[g] = 0
		}
		r.Weights[rec.Group] = routes.MaxWeight
		r.Reason = "baked: " + rec.Group + " takes the reference slice back"
		return nil
	}
	return s.commit(ctx, cause, id, rec.Service, rec.Group, 0, change, events.TrafficChanged)
}

// rollback takes all traffic away from the release's groups: the canary and
// baseline lose their share, and if the new group has the traffic it goes
// back to the previous group first — the new group is destroyed only after
// traffic.restored. Fences: a completed release (rolled back while the group
// it replaced is kept) takes the service's lock first, so no release starts
// on a group being destroyed; the restore is guarded, never onto a group
// with no instance up (refused loudly and retried while the provisioner
// brings it back); a release with nothing to go back to (the first one)
// keeps its group and the traffic on it, and says so.
func (s *Service) rollback(ctx context.Context, on events.Kind, cause, id, reason string) error {
	rec, _, err := s.releases.Get(ctx, id)
	if err != nil {
		return err
	}
	if rec.IsRolling() {
		return nil // the provisioner puts a rolling release's slots back: no traffic to move
	}
	route, _, err := routes.Get(ctx, s.routesKV, rec.Service)
	if err != nil && !errors.Is(err, routes.ErrNotFound) {
		return err
	}
	var gone []string
	for _, g := range []string{rec.Canary, rec.Baseline, rec.Group} {
		if g != "" {
			gone = append(gone, g)
		}
	}
	live := route.Active == rec.Group
	target := route.RestoreTarget(gone...)
	locked := false
	if rec.Phase == release.PhaseCompleted {
		if !live || route.Previous == "" {
			return fmt.Errorf("%w: %s is completed and %s no longer takes the traffic (or nothing is kept to go back to)", release.ErrStale, id, rec.Group)
		}
		if err := s.releases.TakeLock(ctx, rec.Service, id, rec.Group); err != nil {
			return err // ErrStale when another release holds it: roll that one back instead
		}
		locked = true
	}
	rec, err = s.releases.Update(ctx, id, func(r *release.Record) error {
		if r.Reason == "" {
			r.Reason = reason
			if target == "" && live {
				r.Reason += "; nothing to go back to: " + r.Group + " keeps the traffic"
			}
		}
		return r.Step(release.ByRouter, on, time.Now())
	})
	if err != nil {
		if locked && errors.Is(err, release.ErrStale) {
			_ = s.releases.Unlock(ctx, rec.Service, id) // taken for a rollback that no longer applies
		}
		return err
	}
	up, group := 0, rec.Group
	if target != "" {
		group = target
		n, _, err := s.guard(ctx, rec.Service, target)
		if err != nil {
			return err
		}
		if n == 0 {
			why := fmt.Sprintf("restore of %s refused: %s has no instance up; retried until the provisioner brings it back", rec.Service, target)
			_ = s.publish(ctx, cause+":refused", events.TrafficRefused, rec.Service, id, events.TrafficCommand{Service: rec.Service, Group: target, Reason: why})
			return errors.New("router: " + why)
		}
		up = min(n, max(s.capacityOf(rec.Service), 1))
	}
	change := func(r *routes.Route) error {
		if r.RestoreTarget(gone...) == "" { // nothing to go back to: only the canary groups lose their share
			for _, g := range []string{rec.Canary, rec.Baseline} {
				if _, ok := r.Weights[g]; ok && g != "" {
					r.Weights[g] = 0
				}
			}
		} else if _, err := r.Restore(gone...); err != nil {
			return err
		}
		r.Reason = "rollback of " + id + ": " + rec.Reason
		return nil
	}
	s.log.Warn().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, id).Str("restore", group).Str("reason", rec.Reason).Msg("rolling back")
	return s.commit(ctx, cause, id, rec.Service, group, up, change, events.TrafficRestored)
}

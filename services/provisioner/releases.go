package provisioner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// The provisioner's release steps: the canary groups on accepted, the new
// group on canary.passed, the old groups on baked, the release's groups on
// traffic.restored.
var releaseSteps = []events.Kind{events.ReleaseAccepted, events.CanaryPassed, events.Baked, events.TrafficRestored, events.AbortRequested,
	events.RollingRollback, events.RollbackRequested}

// startReleases resumes launches a restart interrupted and starts the
// consumer of release steps.
func (s *Service) startReleases(ctx context.Context) (*natsx.Consumer, error) {
	filters := make([]string, len(releaseSteps))
	for i, k := range releaseSteps {
		filters[i] = k.Subject("*")
	}
	cons, err := natsx.Consume(ctx, s.js, natsx.ConsumerSpec{
		Stream: topology.StreamReleases, Durable: topology.DurableProvisionerReleases, FilterSubjects: filters,
		MaxDeliver: 20, AckWait: release.StepAckWait,
	}, release.Step(s.log, s.cfg.StepTimeout, s.releaseStep), s.log)
	if err != nil {
		return nil, err
	}
	// a group being launched when the last provisioner stopped is tracked
	// again, so its cluster.ready (or failure) still comes
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	launching, err := s.releases.List(lctx, func(r release.Record) bool { return r.Phase == release.PhaseLaunching })
	if err != nil {
		cons.Stop()
		return nil, err
	}
	for _, r := range launching {
		if err := s.launch(lctx, r.ID); err != nil {
			s.log.Warn().Err(err).Str(logging.FieldRelease, r.ID).Msg("resume launch")
		}
	}
	return cons, nil
}

func (s *Service) releaseStep(ctx context.Context, ev events.Event) error {
	k, _ := ev.Kind()
	switch k {
	case events.ReleaseAccepted:
		return s.startCanary(ctx, ev.ReleaseID)
	case events.CanaryPassed:
		return s.launch(ctx, ev.ReleaseID)
	case events.Baked:
		return s.complete(ctx, ev.ReleaseID)
	case events.AbortRequested:
		var a events.Rollback
		if err := ev.DecodeData(&a); err != nil {
			return natsx.Permanent(err)
		}
		return s.abort(ctx, ev.ID, ev.ReleaseID, a)
	case events.TrafficRestored:
		var t events.Traffic
		if err := ev.DecodeData(&t); err != nil {
			return natsx.Permanent(err)
		}
		return s.finishRollback(ctx, ev.ReleaseID, t.Active)
	case events.RollingRollback:
		var b events.RollingBatch
		if err := ev.DecodeData(&b); err != nil {
			return natsx.Permanent(err)
		}
		return s.stepRollback(ctx, k, ev.ReleaseID, b.Reason)
	case events.RollbackRequested:
		var r events.Rollback
		if err := ev.DecodeData(&r); err != nil {
			return natsx.Permanent(err)
		}
		return s.stepRollback(ctx, k, ev.ReleaseID, fmt.Sprintf("%s (by %s)", r.Reason, r.By))
	}
	return natsx.Permanent(fmt.Errorf("provisioner: %s is not a release step", ev.Type))
}

// startCanary launches the baseline (the version now in production) and the
// canary (the new one), together and of the same size. The first release of
// a service has nothing to compare with: the canary service passes it.
func (s *Service) startCanary(ctx context.Context, id string) error {
	rec, _, err := s.releases.Get(ctx, id)
	if err != nil || rec.Previous == "" || rec.IsRolling() {
		return err // a rolling release has no canary phase: its run (rolling.go) drives it
	}
	svc, err := spec.Get(ctx, s.services, rec.Service)
	if err != nil {
		return err
	}
	prev, err := s.provider.DescribeGroup(ctx, rec.Previous)
	if err != nil {
		// nothing of the old version runs to compare with: the canary
		// cannot be judged, so the release is rolled back with the reason
		s.releaseGroupFailed(ctx, id, rec.Service, rec.Previous, "no baseline: "+err.Error())
		return nil
	}
	baseline := release.RoleGroupName(rec.Service, rec.Sequence, release.RoleBaseline)
	canary := release.RoleGroupName(rec.Service, rec.Sequence, release.RoleCanary)
	if _, err := s.releases.Update(ctx, id, func(r *release.Record) error {
		r.Canary, r.Baseline = canary, baseline
		return r.Step(release.ByProvisioner, events.ReleaseAccepted, time.Now())
	}); err != nil {
		return err
	}
	n := svc.Strategy.Canary.Capacity
	cause := events.DerivedID(id, events.CanaryStarted, 0)
	if err := s.launchGroup(ctx, cause+":baseline", id, events.ServerGroupCommand{
		Service: rec.Service, Group: baseline, Version: prev.Spec.Version, Capacity: n, Artifact: prev.Spec.Artifact, Role: release.RoleBaseline,
	}); err != nil {
		return err
	}
	version, artifact := rec.Version, rec.Artifact
	if rec.Calibration { // A/A: the second group runs the production version too
		version, artifact = prev.Spec.Version, prev.Spec.Artifact
	}
	return s.launchGroup(ctx, cause+":canary", id, events.ServerGroupCommand{
		Service: rec.Service, Group: canary, Version: version, Capacity: n, Artifact: artifact, Role: release.RoleCanary,
	})
}

// launch tears the canary groups down (their weight is 0 by now) and
// launches the new group at full capacity; cluster.ready follows when all of
// it is up.
func (s *Service) launch(ctx context.Context, id string) error {
	rec, err := s.releases.Update(ctx, id, func(r *release.Record) error {
		return r.Step(release.ByProvisioner, events.CanaryPassed, time.Now())
	})
	if err != nil {
		return err
	}
	for _, g := range []string{rec.Canary, rec.Baseline} {
		if g != "" {
			if err := s.destroyGroup(ctx, events.DerivedID(id, events.CanaryPassed, 0)+":"+g, rec.Service, g); err != nil {
				return err
			}
		}
	}
	svc, err := spec.Get(ctx, s.services, rec.Service)
	if err != nil {
		return err
	}
	return s.launchGroup(ctx, events.DerivedID(id, events.ClusterReady, 0), id, events.ServerGroupCommand{
		Service: rec.Service, Group: rec.Group, Version: rec.Version, Capacity: s.launchSize(ctx, svc, rec.Previous), Artifact: rec.Artifact, Role: release.RoleProduction,
	})
}

// launchSize is the size of a release's new group: the spec's capacity,
// or, for an autoscaled service, the serving group's current size (within
// the autoscale bounds), as Spinnaker does: a release during a peak must
// not launch the spec's quiet-time size and take the switch's traffic with
// it.
func (s *Service) launchSize(ctx context.Context, svc spec.Service, serving string) int {
	a := svc.Autoscale
	if a == nil || serving == "" {
		return svc.Capacity
	}
	g, err := s.provider.DescribeGroup(ctx, serving)
	if err != nil || g.Desired == 0 {
		return max(svc.Capacity, a.Min)
	}
	return min(max(g.Desired, a.Min), a.Max)
}

// releaseGroupReady announces cluster.ready once a release's new group is
// up. Like every announcement a release waits on, it is tried until it is
// stored (its id is derived, so a retry is never a second event), the
// release has moved on, or the service stops: a read or a publish lost to
// a node's death or an election never stalls a release until its launch
// deadline.
func (s *Service) releaseGroupReady(ctx context.Context, id, service, group string, up int) {
	s.untilStored(ctx, "cluster.ready of "+id, func(ctx context.Context) error {
		rec, _, err := s.releases.Get(ctx, id)
		if err != nil {
			return err
		}
		if rec.Group != group || rec.Phase != release.PhaseLaunching {
			return nil // canary groups (the canary service watches them itself), or moved on
		}
		return natsx.Emit(ctx, s.js, Source, events.DerivedID(id, events.ClusterReady, 0), events.ClusterReady, service, id,
			events.Cluster{Service: service, Group: group, Instances: up})
	})
}

// untilStored runs attempt now and, while it fails, again after a back-off
// (250 ms doubling to 5 s) for as long as the service runs: the caller's
// context ends with its change, the retries live on. Each failure is
// logged.
func (s *Service) untilStored(ctx context.Context, what string, attempt func(ctx context.Context) error) {
	err := attempt(ctx)
	if err == nil {
		return
	}
	s.log.Warn().Err(err).Str("what", what).Msg("publish failed; retrying")
	run := s.runCtx
	s.retries.Add(1)
	go func() {
		defer s.retries.Done()
		for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			select {
			case <-run.Done():
				return
			case <-time.After(wait):
			}
			actx, cancel := context.WithTimeout(run, 5*time.Second)
			err := attempt(actx)
			cancel()
			if err != nil {
				s.log.Warn().Err(err).Str("what", what).Msg("publish failed; retrying")
				continue
			}
			s.log.Info().Str("what", what).Msg("published on a retry")
			return
		}
	}()
}

// releaseGroupFailed asks for a rollback when a release's group cannot
// start (the launch failure of the flow), until the request is stored.
func (s *Service) releaseGroupFailed(ctx context.Context, id, service, group, reason string) {
	s.untilStored(ctx, "rollback.requested of "+id, func(ctx context.Context) error {
		rec, _, err := s.releases.Get(ctx, id)
		if err != nil {
			return err
		}
		if rec.Phase.Final() || rec.Phase == release.PhaseRollingBack {
			return nil
		}
		return natsx.Emit(ctx, s.js, Source, events.DerivedID(id, events.RollbackRequested, 0)+":launch", events.RollbackRequested, service, id,
			events.Rollback{Service: service, Group: group, Reason: fmt.Sprintf("launch of %s failed: %s", group, reason), By: "provisioner"})
	})
}

// complete ends a baked release (the new group has had the traffic since
// the switch: the route says so): keep_previous older groups stay (disabled, for an instant rollback), the
// rest are destroyed, the lock is released.
func (s *Service) complete(ctx context.Context, id string) error {
	rec, _, err := s.releases.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := rec.Expect(release.PhaseBaking, release.PhaseCompleted); err != nil {
		return err
	}
	svc, err := spec.Get(ctx, s.services, rec.Service)
	if err != nil {
		return err
	}
	if rec.Phase == release.PhaseBaking {
		// the router gives the bake's reference slice back on baked too: no
		// group is pruned, and the release does not complete, while a group
		// but its own has traffic
		route, _, err := routes.Get(ctx, s.routes, rec.Service)
		if err != nil && !errors.Is(err, routes.ErrNotFound) {
			return err
		}
		if route.Active == rec.Group && route.Weights[rec.Group] != routes.MaxWeight {
			return fmt.Errorf("%s has %d of %d of %s's traffic: waiting for the router to give the bake's reference slice back", rec.Group, route.Weights[rec.Group], routes.MaxWeight, rec.Service)
		}
	}
	if err := s.prune(ctx, id, rec, svc.Strategy.KeepPrevious); err != nil {
		return err
	}
	if _, err := s.releases.Update(ctx, id, func(r *release.Record) error {
		return r.Step(release.ByProvisioner, events.Baked, time.Now())
	}); err != nil {
		return err
	}
	if err := s.releases.Unlock(ctx, rec.Service, id); err != nil {
		return err
	}
	s.log.Info().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, id).Str(logging.FieldServerGroup, rec.Group).Msg("release completed")
	return natsx.Emit(ctx, s.js, Source, events.DerivedID(id, events.ReleaseCompleted, 0), events.ReleaseCompleted, rec.Service, id,
		events.Completion{Service: rec.Service, Group: rec.Group, Version: rec.Version})
}

// prune keeps the keep newest production groups older than the release's
// own and destroys older ones and any canary or baseline group left behind.
func (s *Service) prune(ctx context.Context, id string, rec release.Record, keep int) error {
	groups, err := s.provider.ListGroups(ctx, rec.Service)
	if err != nil {
		return err
	}
	type older struct {
		name string
		n    int
		role string
	}
	var gs []older
	for _, g := range groups {
		_, n, role, err := release.ParseGroup(g.Spec.Group)
		if err == nil && g.Spec.Group != rec.Group && n <= rec.Sequence {
			gs = append(gs, older{g.Spec.Group, n, role})
		}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].n > gs[j].n })
	// the route's previous group is what a rollback goes back to (the one
	// source of that fact): it is always one of those kept, whatever its
	// number (after a switch by hand it need not be the newest)
	rt, _, err := routes.Get(ctx, s.routes, rec.Service)
	if err != nil && !errors.Is(err, routes.ErrNotFound) {
		return err
	}
	kept := 0
	for _, g := range gs {
		if g.name == rt.Previous && g.role == release.RoleProduction {
			kept++
		}
	}
	for _, g := range gs {
		if g.name == rt.Previous && g.role == release.RoleProduction {
			continue
		}
		if g.role == release.RoleProduction && kept < keep {
			kept++
			continue
		}
		if err := s.destroyGroup(ctx, events.DerivedID(id, events.ReleaseCompleted, 0)+":"+g.name, rec.Service, g.name); err != nil {
			return err
		}
	}
	return nil
}

// abort ends a release by hand, from any phase and whatever is stuck: the
// canary groups' share, and the bake's reference slice, are taken back
// (asked of the router; if it does not answer, those groups are kept
// rather than destroyed with traffic), the
// release's groups without traffic are destroyed, the group with the
// traffic stays as it is, and the record says who ended it and why.
func (s *Service) abort(ctx context.Context, cause, id string, a events.Rollback) error {
	rec, _, err := s.releases.Get(ctx, id)
	if err != nil {
		return err
	}
	if rec.Phase == release.PhaseAborted {
		return s.aborted(ctx, rec) // a redelivery: the lock and the event may not have followed
	}
	if _, _, ok := release.Next(rec.Phase, events.AbortRequested); !ok {
		return rec.Step(release.ByProvisioner, events.AbortRequested, time.Now()) // stale: it has ended
	}
	if rec.IsRolling() {
		return s.abortRolling(ctx, rec, a)
	}
	route, _, err := routes.Get(ctx, s.routes, rec.Service)
	if err != nil && !errors.Is(err, routes.ErrNotFound) {
		return err
	}
	share := map[string]int{}
	for _, g := range []string{rec.Canary, rec.Baseline} {
		if g != "" && route.Weights[g] > 0 {
			share[g] = 0
		}
	}
	if rec.Group != "" && route.Active == rec.Group && route.Previous != "" && route.Weights[route.Previous] > 0 {
		share[route.Previous] = 0 // the bake's reference slice: the release's group keeps all the traffic
	}
	if len(share) > 0 && route.Active != "" {
		share[route.Active] = routes.MaxWeight
		if err := natsx.Emit(ctx, s.js, Source, cause+":weights", events.TrafficSet, rec.Service, id, events.TrafficCommand{Service: rec.Service, Weights: share}); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		for wctx.Err() == nil {
			if r, _, err := routes.Get(wctx, s.routes, rec.Service); err == nil && r.Has(share) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}
	kept := []string{}
	for _, g := range []string{rec.Canary, rec.Baseline, rec.Group} {
		if g == "" {
			continue
		}
		if err := s.destroyGroup(ctx, cause+":"+g, rec.Service, g); errors.Is(err, errRefused) {
			kept = append(kept, g) // it has traffic: kept, never blackholed
		} else if err != nil {
			return err
		}
	}
	by := a.By
	if by == "" {
		by = "someone"
	}
	r, _, _ := routes.Get(ctx, s.routes, rec.Service)
	if r.Active == rec.Group && rec.Group != "" {
		// the release's group kept the traffic: older groups are kept as a
		// completion keeps them, no more
		svc, err := spec.Get(ctx, s.services, rec.Service)
		if err != nil {
			return err
		}
		if err := s.prune(ctx, id, rec, svc.Strategy.KeepPrevious); err != nil {
			return err
		}
	}
	rec, err = s.releases.Update(ctx, id, func(r2 *release.Record) error {
		if err := r2.Step(release.ByProvisioner, events.AbortRequested, time.Now()); err != nil {
			return err
		}
		why := fmt.Sprintf("aborted by %s: %s", by, a.Reason)
		if len(kept) > 0 {
			why += fmt.Sprintf(" (kept %v: they have traffic)", kept)
		}
		if r2.Reason != "" {
			why += " (it was: " + r2.Reason + ")"
		}
		r2.Reason, r2.Restored = why, r.Active
		return nil
	})
	if err != nil {
		return err
	}
	return s.aborted(ctx, rec)
}

// aborted frees the lock of an aborted release and announces it (again, on
// a redelivery: the event's id is derived, so it is published once).
func (s *Service) aborted(ctx context.Context, rec release.Record) error {
	if err := s.releases.Unlock(ctx, rec.Service, rec.ID); err != nil {
		return err
	}
	s.log.Warn().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, rec.ID).Str("reason", rec.Reason).Msg("release aborted")
	return natsx.Emit(ctx, s.js, Source, events.DerivedID(rec.ID, events.ReleaseAborted, 0), events.ReleaseAborted, rec.Service, rec.ID,
		events.RollbackDone{Service: rec.Service, Group: rec.Group, Restored: rec.Restored, Reason: rec.Reason})
}

// finishRollback runs once the router has taken the traffic away from the
// release's groups: they are destroyed (never the group that has the
// traffic) and the lock released.
func (s *Service) finishRollback(ctx context.Context, id, active string) error {
	rec, _, err := s.releases.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := rec.Expect(release.PhaseRollingBack, release.PhaseRolledBack); err != nil {
		return err
	}
	for _, g := range []string{rec.Canary, rec.Baseline, rec.Group} {
		if g == "" || g == active {
			continue
		}
		if err := s.destroyGroup(ctx, events.DerivedID(id, events.RolledBack, 0)+":"+g, rec.Service, g); err != nil {
			return err
		}
	}
	rec, err = s.releases.Update(ctx, id, func(r *release.Record) error {
		r.Restored = active
		if err := r.Step(release.ByProvisioner, events.TrafficRestored, time.Now()); err != nil {
			return err
		}
		if r.Calibration {
			r.Outcome = "calibrated" // nothing was released: its groups are gone
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.releases.Unlock(ctx, rec.Service, id); err != nil {
		return err
	}
	s.log.Info().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, id).Str("restored", active).Str("reason", rec.Reason).Msg("release rolled back")
	return natsx.Emit(ctx, s.js, Source, events.DerivedID(id, events.RolledBack, 0), events.RolledBack, rec.Service, id,
		events.RollbackDone{Service: rec.Service, Group: rec.Group, Restored: active, Reason: rec.Reason})
}

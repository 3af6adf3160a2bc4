package watchdog

import (
	"context"
	"fmt"
	"time"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/loop"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
)

// Deadline returns the phase a release's clock runs for, when it started
// and how long it may take; ok is false when the phase has no deadline.
func Deadline(r release.Record, st spec.Strategy) (name string, from time.Time, limit time.Duration, ok bool) {
	d := st.Deadlines
	switch r.Phase {
	case release.PhaseAccepted, release.PhaseCanary:
		return "canary", r.EnteredAt(release.PhaseAccepted), r.CanaryDeadline(st.Canary.Duration.D(), d.Canary.D()), true
	case release.PhaseLaunching:
		return "launch", r.EnteredAt(release.PhaseLaunching), d.Launch.D(), true
	case release.PhaseSwitching:
		return "switch", r.EnteredAt(release.PhaseSwitching), d.Switch.D(), true
	case release.PhaseBaking:
		return "bake", r.EnteredAt(release.PhaseBaking), d.Bake.D(), true
	case release.PhaseRollingBack:
		return "rollback", r.EnteredAt(release.PhaseRollingBack), d.Rollback.D(), true
	case release.PhaseRolling:
		if r.Rolling == nil {
			return "batch", r.EnteredAt(release.PhaseRolling), d.Batch.D(), true
		}
		return "batch", r.Rolling.BatchStarted, d.Batch.D(), true
	}
	return "", time.Time{}, 0, false
}

// enforceDeadlines turns every missed phase deadline into a rollback whose
// reason names it, so no release stays stuck.
func (s *Service) enforceDeadlines(ctx context.Context) {
	loop.Every(ctx, s.cfg.DeadlineCheck, func() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s.checkDeadlines(cctx, time.Now())
		cancel()
	})
}

func (s *Service) checkDeadlines(ctx context.Context, now time.Time) {
	s.mu.Lock()
	recs := make([]release.Record, 0, len(s.inflight))
	for _, r := range s.inflight {
		recs = append(recs, r)
	}
	s.mu.Unlock()
	for _, r := range recs {
		svc, err := spec.Get(ctx, s.services, r.Service)
		if err != nil {
			continue
		}
		name, from, limit, ok := Deadline(r, svc.Strategy)
		if !ok || from.IsZero() || now.Sub(from) < limit {
			continue
		}
		if r.Phase == release.PhaseRollingBack {
			s.unstick(ctx, r, now.Sub(from), limit)
			continue
		}
		reason := fmt.Sprintf("deadline: the %s phase did not end within %s", name, limit)
		s.log.Warn().Str(logging.FieldService, r.Service).Str(logging.FieldRelease, r.ID).Str("reason", reason).Msg("deadline missed")
		if err := natsx.Emit(ctx, s.js, Source, events.DerivedID(r.ID, events.RollbackRequested, 0)+":deadline:"+name, events.RollbackRequested, r.Service, r.ID,
			events.Rollback{Service: r.Service, Group: r.Group, Reason: reason, By: "watchdog"}); err != nil {
			s.log.Warn().Err(err).Msg("deadlines: publish rollback")
		}
	}
}

// Redrive is the schedule of a rollback past its deadline: driven again at
// the deadline and then after every, 2×every, 4×every… (at most 8×every
// apart); stuck is raised once every every. It returns the attempt due by
// over (time past the start of rolling_back) and the stuck event's number.
func Redrive(over, limit, every time.Duration) (attempt, stuck int) {
	late := over - limit
	if late < 0 {
		return -1, -1
	}
	step, at := every, time.Duration(0)
	for attempt = 0; at+step <= late; attempt++ {
		at += step
		step = min(2*step, 8*every)
	}
	return attempt, int(late / every)
}

// unstick re-drives a rollback that has not finished by its deadline: it
// publishes rollback.requested again (the router restores again and
// announces traffic.restored again, on which the provisioner tears down
// again), with backoff, and raises release.<svc>.stuck with the reason every
// StuckEvery until the release ends.
func (s *Service) unstick(ctx context.Context, r release.Record, over, limit time.Duration) {
	attempt, n := Redrive(over, limit, s.cfg.StuckEvery)
	log := s.log.With().Str(logging.FieldService, r.Service).Str(logging.FieldRelease, r.ID).Logger()
	reason := fmt.Sprintf("rolling back for %s (deadline %s): the restore or the teardown has not finished; driven again %d times; the rollback's reason: %s",
		over.Round(time.Second), limit, attempt+1, r.Reason)
	if err := natsx.Emit(ctx, s.js, Source, fmt.Sprintf("%s:redrive:%d", events.DerivedID(r.ID, events.RollbackRequested, 0), attempt), events.RollbackRequested, r.Service, r.ID,
		events.Rollback{Service: r.Service, Group: r.Group, Reason: "driven again: " + r.Reason, By: "watchdog"}); err != nil {
		log.Warn().Err(err).Msg("re-drive the rollback")
	}
	if err := natsx.Emit(ctx, s.js, Source, fmt.Sprintf("%s:%d", events.DerivedID(r.ID, events.ReleaseStuck, 0), n), events.ReleaseStuck, r.Service, r.ID,
		events.Stuck{Service: r.Service, Phase: string(r.Phase), For: over, Redriven: attempt + 1, Reason: reason}); err != nil {
		log.Warn().Err(err).Msg("raise stuck")
	}
}

// followReleases keeps the releases in flight (for the deadlines) and
// starts the health watch of every release that bakes, or that completed
// and is still watched, including those a restart interrupted.
func (s *Service) followReleases(ctx context.Context) error {
	return release.Watch(ctx, s.releases.KV, s.log, func(r release.Record, initial bool) {
		s.followed(ctx, r, initial)
	})
}

// followed handles one record of the releases bucket.
func (s *Service) followed(ctx context.Context, r release.Record, initial bool) {
	s.prom.record(r, initial)
	s.mu.Lock()
	if r.Phase.Final() {
		delete(s.inflight, r.ID)
	} else {
		s.inflight[r.ID] = r
	}
	s.mu.Unlock()
	switch {
	case r.Phase == release.PhaseBaking:
		s.bakes.Ensure(ctx, r.ID, s.watch)
	case r.Phase == release.PhaseCompleted && initial && !r.IsRolling():
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if s.stillWatched(cctx, r) {
			s.bakes.Ensure(ctx, r.ID, s.watch)
		}
		cancel()
	}
}

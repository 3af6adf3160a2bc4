package provisioner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/rolling"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
)

// The rolling flow (strategy rolling). One run per rolling release, in the
// copy that holds its lease, drives it from its record, so a restart (or
// another copy) resumes where the record says:
//
//	accepted     plan the batches, start the first            → rolling.batch.started
//	rolling      a batch: its slots leave the previous group
//	             and start in the new one (each slot's volume
//	             goes with it), all up, the traffic shares set,
//	             the health gate held                          → rolling.batch.healthy
//	             the canary service verifies it                → rolling.batch.done (or rolling.rollback)
//	             the next batch after batch_pause, or the new
//	             group becomes the route's active one, the
//	             empty previous group goes                     → completed
//	rolling_back the replaced slots go back, batch by batch
//	             in reverse, then the new group goes           → rolled_back
//
// The volume of a slot is held by one process at a time (the local
// provider starts a slot's instance only once the one it replaces has
// exited), so a batch costs each of its slots an outage of a stop and a
// start: callers retry the slot until its deadline (lb.Client.DoKey).
//
// A stateless service (strategy.rolling.stateless) rolls by count
// (Rolling.ByCount): a batch shrinks the previous group and grows the new
// one by its size, each a group of its own (on aws behind its own target
// group, so the verify judges the two versions apart and the traffic
// shares are the ALB's weights).

// rollingRole is the lease role of the runs: one copy drives a release.
const rollingRole = "provisioner-rolling"

// pollEvery is how often a run looks at discovery and the record while it
// waits on them.
const pollEvery = 50 * time.Millisecond

// startRolling follows the releases bucket and keeps a run for every
// rolling release in flight (those a restart interrupted resume).
func (s *Service) startRolling(ctx context.Context) error {
	s.rolls.Log = s.log
	s.rolls.Lease = &release.Lease{KV: s.releases.KV, Role: rollingRole, Owner: release.NewOwner("provisioner")}
	return release.Watch(ctx, s.releases.KV, s.log, func(r release.Record, _ bool) {
		if r.IsRolling() && (r.Phase == release.PhaseAccepted || r.Phase == release.PhaseRolling || r.Phase == release.PhaseRollingBack) {
			s.rolls.Ensure(ctx, r.ID, s.roll)
		}
	})
}

// roll drives one rolling release until it ends.
func (s *Service) roll(ctx context.Context, id string) error {
	for {
		rec, _, err := s.releases.Get(ctx, id)
		if err != nil {
			return err
		}
		if !rec.IsRolling() {
			return release.ErrStale
		}
		svc, err := spec.Get(ctx, s.services, rec.Service)
		if err != nil {
			return err
		}
		switch rec.Phase {
		case release.PhaseAccepted:
			err = s.rollStart(ctx, rec, svc)
		case release.PhaseRolling:
			err = s.rollBatch(ctx, rec, svc)
		case release.PhaseRollingBack:
			return s.rollBack(ctx, rec, svc)
		default:
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// allSlots is 0 … n-1.
func allSlots(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// complement is the slots of 0 … n-1 not in slots.
func complement(n int, slots []int) []int {
	var out []int
	for _, i := range allSlots(n) {
		if !slices.Contains(slots, i) {
			out = append(out, i)
		}
	}
	return out
}

// rollStart plans the batches and starts the first. A release that cannot
// roll (slots on a provider without them, a previous group that is not
// stateful or has another number of slots; stateless, one with another
// number of instances) is rolled back with the reason, before anything
// moved.
func (s *Service) rollStart(ctx context.Context, rec release.Record, svc spec.Service) error {
	n := svc.Capacity
	slotted := !svc.Strategy.Rolling.Stateless
	if _, ok := s.provider.(fleet.Slotter); slotted && !ok {
		return s.rollFail(ctx, rec, fmt.Sprintf("provider %s runs no slots: roll a stateless service with strategy.rolling.stateless", s.providerName()))
	}
	if rec.Previous != "" {
		prev, err := s.provider.DescribeGroup(ctx, rec.Previous)
		if errors.Is(err, fleet.ErrGroupNotFound) {
			return s.rollFail(ctx, rec, "the previous group "+rec.Previous+" is gone: nothing to roll from")
		}
		if err != nil {
			return err
		}
		switch got := prev.Spec.Slots; {
		case slotted && !prev.Spec.Stateful:
			return s.rollFail(ctx, rec, fmt.Sprintf("the previous group %s is not stateful (it was released red/black): a rolling release moves slots between stateful groups", rec.Previous))
		case slotted && !slices.Equal(slices.Sorted(slices.Values(got)), allSlots(n)):
			return s.rollFail(ctx, rec, fmt.Sprintf("the previous group %s runs slots %v and the spec's capacity is %d: changing a stateful service's number of slots is not built", rec.Previous, got, n))
		case !slotted && prev.Spec.Capacity != n:
			return s.rollFail(ctx, rec, fmt.Sprintf("the previous group %s runs %d instances and the spec's capacity is %d: a rolling release keeps the number of instances (resize the group first)", rec.Previous, prev.Spec.Capacity, n))
		}
	}
	mu, err := rolling.ParseMaxUnavailable(svc.Strategy.Rolling.MaxUnavailable)
	if err != nil {
		return s.rollFail(ctx, rec, err.Error())
	}
	batches := rolling.Plan(allSlots(n), mu.Of(n))
	now := time.Now().UTC()
	rec, err = s.releases.Update(ctx, rec.ID, func(r *release.Record) error {
		if err := r.Step(release.ByProvisioner, events.RollingBatchStarted, now); err != nil {
			return err
		}
		if r.Rolling == nil {
			r.Rolling = &release.Rolling{Batches: batches, BatchStarted: now, ByCount: !slotted}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Info().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, rec.ID).Int("slots", n).Int("batches", len(batches)).Bool("by_count", !slotted).Msg("rolling release started")
	return s.emitBatch(ctx, rec, events.RollingBatchStarted, 0, "", 0)
}

// emitBatch announces an event of batch b (0-based) of a rolling release;
// up is how long its slots took to be up (healthy only).
func (s *Service) emitBatch(ctx context.Context, rec release.Record, k events.Kind, b int, reason string, up time.Duration) error {
	ro := rec.Rolling
	data := events.RollingBatch{Service: rec.Service, Group: rec.Group, Previous: rec.Previous, Batch: b + 1, Batches: len(ro.Batches),
		Slots: ro.SlotNames(rec.Service, b), Count: len(ro.Batches[b]), Took: time.Since(ro.BatchStarted), Up: up, Reason: reason}
	return natsx.Emit(ctx, s.js, Source, events.DerivedID(rec.ID, k, b), k, rec.Service, rec.ID, data)
}

// rollBatch moves the release on by one step of its current batch.
func (s *Service) rollBatch(ctx context.Context, rec release.Record, svc spec.Service) error {
	ro := rec.Rolling
	if ro == nil || ro.Current >= len(ro.Batches) {
		return s.rollFail(ctx, rec, "the record's rolling plan is missing or past its end")
	}
	b := ro.Current
	switch {
	case ro.Verified > b && b+1 == len(ro.Batches):
		return s.rollComplete(ctx, rec)
	case ro.Verified > b:
		return s.nextBatch(ctx, rec, svc.Strategy.Rolling.BatchPause.D())
	case ro.Healthy > b:
		// the canary service verifies the batch: its verdict moves the record
		_, err := s.awaitRecord(ctx, rec.ID, func(r release.Record) bool {
			return r.Phase != release.PhaseRolling || r.Rolling == nil || r.Rolling.Verified > b
		})
		return err
	}
	return s.replaceBatch(ctx, rec, svc)
}

// replaceBatch moves the current batch's slots to the new group, waits
// until they are up, gives the new group its share of the calls, holds the
// health gate and announces the batch healthy.
func (s *Service) replaceBatch(ctx context.Context, rec release.Record, svc spec.Service) error {
	ro := rec.Rolling
	b, n := ro.Current, svc.Capacity
	replaced := ro.Replaced()
	if err := s.placeBatch(ctx, rec, replaced, n); err != nil {
		return err
	}
	ids, err := s.awaitUp(ctx, rec, rec.Group, replaced)
	if err != nil || ids == nil {
		return err // nil ids: the release moved on
	}
	up := time.Since(ro.BatchStarted)
	if err := s.shareCalls(ctx, rec, len(replaced), n); err != nil {
		return err
	}
	// the health gate: the same instances, up, for its whole length
	gate := svc.Strategy.Rolling.HealthGate.D()
	end := time.Now().Add(gate)
	for {
		running, err := s.upIn(ctx, rec, rec.Group)
		if err == nil {
			for _, key := range slices.Sorted(maps.Keys(ids)) {
				if running[key] != ids[key] {
					what := "is down"
					if running[key] != "" {
						what = "was replaced by " + running[key]
					}
					who := "instance " + ids[key]
					if key != ids[key] {
						who = key + "'s " + who
					}
					return s.rollFail(ctx, rec, fmt.Sprintf("health gate of batch %d: %s %s within the gate (%s)", b+1, who, what, gate))
				}
			}
		}
		if !time.Now().Before(end) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(pollEvery, time.Until(end))):
		}
	}
	now := time.Now().UTC()
	rec, err = s.releases.Update(ctx, rec.ID, func(r *release.Record) error {
		if err := r.Expect(release.PhaseRolling); err != nil {
			return err
		}
		if r.Rolling.Current != b {
			return fmt.Errorf("%w: batch %d is no longer current", release.ErrStale, b+1)
		}
		r.Rolling.Healthy, r.Rolling.HealthyAt = b+1, now
		if r.JudgeFrom.IsZero() {
			r.JudgeFrom = now
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Info().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, rec.ID).Int("batch", b+1).Strs("instances", slices.Sorted(maps.Values(ids))).Msg("rolling batch healthy")
	return s.emitBatch(ctx, rec, events.RollingBatchHealthy, b, "", up)
}

// placeBatch gives the new group the replaced slots and the previous
// group the others (the one per volume rule orders the moves); by count,
// the previous group shrinks first, so no more than the batch is ever
// missing.
func (s *Service) placeBatch(ctx context.Context, rec release.Record, replaced []int, n int) error {
	if rec.Previous != "" {
		if err := s.place(ctx, rec, rec.Previous, complement(n, replaced)); err != nil {
			return err
		}
	}
	if _, err := s.provider.DescribeGroup(ctx, rec.Group); errors.Is(err, fleet.ErrGroupNotFound) {
		cmd := events.ServerGroupCommand{Service: rec.Service, Group: rec.Group, Version: rec.Version, Capacity: len(replaced), Artifact: rec.Artifact,
			Role: release.RoleProduction}
		if !rec.Rolling.ByCount {
			cmd.Stateful, cmd.Slots, cmd.SlotCount = true, replaced, n
			if ho, ok := s.provider.(hostOwner); ok && rec.Previous != "" {
				// the slots' volumes are directories on the previous
				// group's host: the new group runs there too
				if cmd.Host, err = ho.OwnerOf(ctx, rec.Previous); err != nil {
					return err
				}
			}
		}
		return s.launchGroup(ctx, events.DerivedID(rec.ID, events.RollingBatchStarted, 0)+":create", rec.ID, cmd)
	} else if err != nil {
		return err
	}
	return s.place(ctx, rec, rec.Group, replaced)
}

// hostOwner is a provider of groups on several hosts (package hosts): it
// tells which host runs a group ("" if none is recorded).
type hostOwner interface {
	OwnerOf(ctx context.Context, group string) (string, error)
}

// place makes group run these slots, or, by count, that many instances.
// A group already gone runs none, as asked.
func (s *Service) place(ctx context.Context, rec release.Record, group string, slots []int) error {
	var err error
	if rec.Rolling.ByCount {
		err = s.provider.Resize(ctx, group, len(slots))
	} else if slotter, ok := s.provider.(fleet.Slotter); ok {
		err = slotter.SetSlots(ctx, group, slots)
	} else {
		return fmt.Errorf("rolling: provider %s runs no slots, and the release rolls by slot", s.providerName())
	}
	if len(slots) == 0 && errors.Is(err, fleet.ErrGroupNotFound) {
		return nil
	}
	return err
}

// upIn is group's up instances in discovery: by slot name, or, by count,
// by their own id.
func (s *Service) upIn(ctx context.Context, rec release.Record, group string) (map[string]string, error) {
	if !rec.Rolling.ByCount {
		return discovery.UpBySlot(ctx, s.instances, rec.Service, group)
	}
	ids, err := discovery.Up(ctx, s.instances, rec.Service, group)
	out := make(map[string]string, len(ids))
	for _, id := range ids {
		out[id] = id
	}
	return out, err
}

// awaitUp waits until every slot of group is up in discovery (by count:
// as many instances as slots) and returns group's up instances (upIn); nil
// (and no error) if the release left the phase it was in meanwhile.
func (s *Service) awaitUp(ctx context.Context, rec release.Record, group string, slots []int) (map[string]string, error) {
	for {
		cur, _, err := s.releases.Get(ctx, rec.ID)
		if err != nil {
			return nil, err
		}
		if cur.Phase != rec.Phase {
			return nil, nil
		}
		up, err := s.upIn(ctx, rec, group)
		if err == nil {
			all := len(up) >= len(slots) // by count, enough instances
			if !rec.Rolling.ByCount {
				for _, n := range rolling.SlotNames(rec.Service, slots) {
					all = all && up[n] != ""
				}
			}
			if all {
				return up, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// shareCalls sets the route's weights to each group's share of the slots
// (the calls not sent to a slot by key balance by them) and waits until
// the router has applied them. Without a previous group there is nothing
// to share: the new group becomes active at completion.
func (s *Service) shareCalls(ctx context.Context, rec release.Record, replaced, n int) error {
	if rec.Previous == "" {
		return nil
	}
	w := map[string]int{rec.Group: routes.MaxWeight * replaced / n, rec.Previous: routes.MaxWeight - routes.MaxWeight*replaced/n}
	return s.setWeights(ctx, rec, w)
}

// setWeights asks the router for weights and waits (30 s) until it has
// applied them everywhere, the edge's load balancer included.
func (s *Service) setWeights(ctx context.Context, rec release.Record, w map[string]int) error {
	if r, _, err := routes.Get(ctx, s.routes, rec.Service); err == nil && r.Has(w) {
		return nil
	}
	cause := fmt.Sprintf("%s:weights:%s", events.DerivedID(rec.ID, events.RollingBatchStarted, 0), events.NewID())
	if err := s.traffic(ctx, rec, cause, events.TrafficSet, events.TrafficCommand{Service: rec.Service, Weights: w}, events.TrafficChanged); err != nil {
		return fmt.Errorf("rolling: weights %v for %s: %w", w, rec.Service, err)
	}
	return nil
}

// traffic sends the router a traffic command and waits (30 s) for its
// answer out, which the router announces once every router and the edge
// (the ALB, on aws) have applied the change; the routes bucket alone
// holds a change before the edge does.
func (s *Service) traffic(ctx context.Context, rec release.Record, cause string, k events.Kind, c events.TrafficCommand, out events.Kind) error {
	sub, err := s.nc.SubscribeSync(out.Subject(rec.Service))
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := natsx.Emit(ctx, s.js, Source, cause, k, rec.Service, rec.ID, c); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	want := cause + ":" + out.Name
	for {
		m, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("the router did not apply it within 30s (refused? see traffic.refused): %w", err)
		}
		if ev, err := events.Decode(m.Data); err == nil && ev.ID == want {
			return nil
		}
	}
}

// nextBatch starts the batch after the current one, batch_pause after the
// current one's verify.
func (s *Service) nextBatch(ctx context.Context, rec release.Record, pause time.Duration) error {
	if pause > 0 {
		select { // the spec's pause between batches
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
	b := rec.Rolling.Current
	now := time.Now().UTC()
	rec, err := s.releases.Update(ctx, rec.ID, func(r *release.Record) error {
		if err := r.Expect(release.PhaseRolling); err != nil {
			return err
		}
		if r.Rolling.Current == b {
			r.Rolling.Current, r.Rolling.BatchStarted, r.Rolling.HealthyAt = b+1, now, time.Time{}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.emitBatch(ctx, rec, events.RollingBatchStarted, rec.Rolling.Current, "", 0)
}

// rollComplete ends a rolling release whose last batch is verified: the new
// group becomes the route's active one (the router's switch, guarded: all
// its slots up), the previous group (it runs no slot now) is destroyed,
// and the lock released.
func (s *Service) rollComplete(ctx context.Context, rec release.Record) error {
	r, _, err := routes.Get(ctx, s.routes, rec.Service)
	if err != nil && !errors.Is(err, routes.ErrNotFound) {
		return err
	}
	if r.Active != rec.Group {
		if err := s.traffic(ctx, rec, events.DerivedID(rec.ID, events.ReleaseCompleted, 0)+":switch:"+events.NewID(), events.TrafficSwitch,
			events.TrafficCommand{Service: rec.Service, Group: rec.Group}, events.TrafficSwitched); err != nil {
			return fmt.Errorf("rolling: the switch of %s to %s: %w", rec.Service, rec.Group, err)
		}
	}
	if rec.Previous != "" {
		if err := s.destroyGroup(ctx, events.DerivedID(rec.ID, events.ReleaseCompleted, 0)+":"+rec.Previous, rec.Service, rec.Previous); err != nil {
			return err
		}
	}
	rec, err = s.releases.Update(ctx, rec.ID, func(r *release.Record) error {
		return r.Step(release.ByProvisioner, events.ReleaseCompleted, time.Now())
	})
	if err != nil {
		return err
	}
	if err := s.releases.Unlock(ctx, rec.Service, rec.ID); err != nil {
		return err
	}
	s.log.Info().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, rec.ID).Str(logging.FieldServerGroup, rec.Group).Msg("rolling release completed")
	return natsx.Emit(ctx, s.js, Source, events.DerivedID(rec.ID, events.ReleaseCompleted, 0), events.ReleaseCompleted, rec.Service, rec.ID,
		events.Completion{Service: rec.Service, Group: rec.Group, Version: rec.Version})
}

// awaitRecord waits until the release's record satisfies ok.
func (s *Service) awaitRecord(ctx context.Context, id string, ok func(release.Record) bool) (release.Record, error) {
	for {
		r, _, err := s.releases.Get(ctx, id)
		if err != nil {
			return r, err
		}
		if ok(r) {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// rollFail rolls a rolling release back with the reason: the record moves
// to rolling_back (then this run puts the slots back), and the rollback is
// announced: rolling.rollback from a batch, rollback.requested before the
// first (or when the record's plan names no batch in hand).
func (s *Service) rollFail(ctx context.Context, rec release.Record, reason string) error {
	k := events.RollingRollback
	if ro := rec.Rolling; rec.Phase == release.PhaseAccepted || ro == nil || ro.Current < 0 || ro.Current >= len(ro.Batches) {
		k = events.RollbackRequested // before the first batch, or no batch to name
	}
	rec, err := s.releases.Update(ctx, rec.ID, func(r *release.Record) error {
		if r.Reason == "" {
			r.Reason = reason
		}
		// the step is rolling.rollback whatever is announced: a rolling
		// release's rollback is the provisioner's from accepted too
		return r.Step(release.ByProvisioner, events.RollingRollback, time.Now())
	})
	if err != nil {
		return err
	}
	s.log.Warn().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, rec.ID).Str("reason", reason).Msg("rolling release fails")
	if k == events.RollbackRequested {
		return natsx.Emit(ctx, s.js, Source, events.DerivedID(rec.ID, k, 0)+":rolling", k, rec.Service, rec.ID,
			events.Rollback{Service: rec.Service, Group: rec.Group, Reason: reason, By: "provisioner"})
	}
	return s.emitBatch(ctx, rec, k, rec.Rolling.Current, reason, 0)
}

// stepRollback moves a rolling release to rolling_back on a rollback asked
// by someone else (the canary service's failed verify, the watchdog's
// deadline, a user); the run puts the slots back. Other releases' rollbacks
// are the router's.
func (s *Service) stepRollback(ctx context.Context, k events.Kind, id, reason string) error {
	rec, _, err := s.releases.Get(ctx, id)
	if err != nil || !rec.IsRolling() {
		return err
	}
	if rec.Phase == release.PhaseCompleted {
		return fmt.Errorf("%w: %s completed: a rolling release's previous group is gone; release the old version again (rolling)", release.ErrStale, id)
	}
	_, err = s.releases.Update(ctx, id, func(r *release.Record) error {
		if r.Reason == "" {
			r.Reason = reason
		}
		if r.Phase == release.PhaseAccepted {
			// nothing rolled yet: the table gives a red/black release's
			// rollback from accepted to the router, a rolling one's to the
			// provisioner as rolling.rollback
			k = events.RollingRollback
		}
		return r.Step(release.ByProvisioner, k, time.Now())
	})
	return err
}

// rollBack puts a rolling release's replaced slots back on the previous
// group, batch by batch in reverse (the batch in hand first), destroys the
// new group and ends the release rolled_back. It resumes from the record's
// count of batches put back.
func (s *Service) rollBack(ctx context.Context, rec release.Record, svc spec.Service) error {
	n := svc.Capacity
	if ro := rec.Rolling; ro != nil && rec.Previous != "" {
		back := rolling.Reverse(ro.Batches, ro.Current+1)
		for i := ro.Back; i < len(back); i++ {
			// the new group keeps the slots of the batches not yet put back
			var keep []int
			for _, b := range back[i+1:] {
				keep = append(keep, b...)
			}
			restore := complement(n, keep)
			if err := s.place(ctx, rec, rec.Group, keep); err != nil && !errors.Is(err, fleet.ErrGroupNotFound) {
				return err
			}
			if err := s.place(ctx, rec, rec.Previous, restore); err != nil {
				return err
			}
			if _, err := s.awaitUp(ctx, rec, rec.Previous, restore); err != nil {
				return err
			}
			if err := s.shareCalls(ctx, rec, len(keep), n); err != nil {
				return err
			}
			var err error
			if rec, err = s.releases.Update(ctx, rec.ID, func(r *release.Record) error {
				if err := r.Expect(release.PhaseRollingBack); err != nil {
					return err
				}
				r.Rolling.Back = max(r.Rolling.Back, i+1)
				return nil
			}); err != nil {
				return err
			}
			s.log.Info().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, rec.ID).Ints("positions", back[i]).Bool("by_count", ro.ByCount).Msg("rolling back: batch restored")
		}
	}
	if err := s.destroyGroup(ctx, events.DerivedID(rec.ID, events.RolledBack, 0)+":"+rec.Group, rec.Service, rec.Group); err != nil {
		return err
	}
	rec, err := s.releases.Update(ctx, rec.ID, func(r *release.Record) error {
		r.Restored = r.Previous
		return r.Step(release.ByProvisioner, events.RolledBack, time.Now())
	})
	if err != nil {
		return err
	}
	if err := s.releases.Unlock(ctx, rec.Service, rec.ID); err != nil {
		return err
	}
	s.log.Info().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, rec.ID).Str("reason", rec.Reason).Msg("rolling release rolled back")
	return natsx.Emit(ctx, s.js, Source, events.DerivedID(rec.ID, events.RolledBack, 0), events.RolledBack, rec.Service, rec.ID,
		events.RollbackDone{Service: rec.Service, Group: rec.Group, Restored: rec.Previous, Reason: rec.Reason})
}

// abortRolling ends a rolling release by hand, whatever is stuck: its run
// stops (the record is final), and the slots stay where they are, each
// with its volume: no group is destroyed, since each may run slots that
// hold data. The record says which group runs which slots.
func (s *Service) abortRolling(ctx context.Context, rec release.Record, a events.Rollback) error {
	where := []string{}
	for _, g := range []string{rec.Previous, rec.Group} {
		if g == "" {
			continue
		}
		grp, err := s.provider.DescribeGroup(ctx, g)
		switch {
		case err != nil:
		case rec.Rolling != nil && rec.Rolling.ByCount:
			where = append(where, fmt.Sprintf("%s runs %d instances", g, grp.Spec.Capacity))
		default:
			where = append(where, fmt.Sprintf("%s runs %v", g, rolling.SlotNames(rec.Service, grp.Spec.Slots)))
		}
	}
	by := a.By
	if by == "" {
		by = "someone"
	}
	rec, err := s.releases.Update(ctx, rec.ID, func(r *release.Record) error {
		if err := r.Step(release.ByProvisioner, events.AbortRequested, time.Now()); err != nil {
			return err
		}
		why := fmt.Sprintf("aborted by %s: %s; the slots stay where they are (%s)", by, a.Reason, strings.Join(where, "; "))
		if r.Reason != "" {
			why += " (it was: " + r.Reason + ")"
		}
		r.Reason = why
		return nil
	})
	if err != nil {
		return err
	}
	return s.aborted(ctx, rec)
}

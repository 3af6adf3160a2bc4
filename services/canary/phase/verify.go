package phase

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
)

// The verify of a rolling release's batches (strategy rolling). Once the
// provisioner has announced a batch healthy, the canary judge compares the
// slots already replaced (the release's group) with those not yet replaced
// (the previous group) on the callers' live samples, with the canary's
// metrics, confidence and min_samples. The evidence adds up over the
// batches in one checkpoint from the first healthy batch on: the
// confidence sequences hold over every look of every batch, so the whole
// roll, not each batch, has the canary's false-failure bound. A batch
// passes at health time + verify.duration unless it failed; with too few
// requests it waits, and fails at its deadline. The service's analysis
// templates are judged beside the router's metrics, as in a canary.

// ensureVerify keeps a verify run for a rolling release with a healthy
// batch not yet verified.
func (p *Phase) ensureVerify(ctx context.Context, r release.Record) {
	if r.IsRolling() && r.Phase == release.PhaseRolling && r.Rolling != nil && r.Rolling.Healthy > r.Rolling.Verified {
		p.verifies.Ensure(ctx, r.ID, p.verify)
	}
}

// verify judges the batch in hand and announces rolling.batch.done (the
// record's Verified moved first) or rolling.rollback with the report.
func (p *Phase) verify(ctx context.Context, id string) error {
	rec, _, err := p.releases.Get(ctx, id)
	if err != nil {
		return err
	}
	ro := rec.Rolling
	if rec.Phase != release.PhaseRolling || ro == nil || ro.Healthy <= ro.Verified {
		return nil
	}
	b := ro.Verified
	if b >= len(ro.Batches) {
		return fmt.Errorf("%w: %s's record verifies batch %d of %d", release.ErrStale, id, b+1, len(ro.Batches))
	}
	svc, err := spec.Get(ctx, p.services, rec.Service)
	if err != nil {
		return err
	}
	cs := svc.Strategy.Canary
	log := p.log.With().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, id).Int("batch", b+1).Logger()
	if rec.Previous == "" {
		return p.verified(ctx, rec, b, events.CanaryResult{Service: rec.Service, Canary: rec.Group, Score: 100,
			Reason: "first release of " + rec.Service + ": nothing runs to compare with, so the batch is not verified"}, true)
	}
	deadline := ro.BatchStarted.Add(svc.Strategy.Deadlines.Batch.D())
	w := judged{baseline: rec.Previous, canary: rec.Group,
		end: ro.HealthyAt.Add(svc.Strategy.Rolling.Verify.Duration.D()), last: deadline.Add(-cs.Interval.D()), phase: release.PhaseRolling}
	// the analysis templates, as in a canary: the slots not yet replaced
	// are the baseline, the replaced ones the canary
	if w.templates, err = analysis.Resolve(ctx, p.analysis, svc); err != nil {
		if !errors.Is(err, analysis.ErrNotFound) {
			return err
		}
		return p.verified(ctx, rec, b, events.CanaryResult{Service: rec.Service, Canary: rec.Group, Reason: "inconclusive: " + err.Error()}, false)
	}
	w.vars = p.templateVars(ctx, rec, rec.Previous, rec.Group, rec.EnteredAt(release.PhaseRolling))
	v, err := p.judge(ctx, rec, cs, w)
	if err != nil {
		return err
	}
	log.Info().Bool("pass", v.pass).Float64("score", v.result.Score).Str("reason", v.result.Reason).Msg("rolling batch verified")
	return p.verified(ctx, rec, b, v.result, v.pass)
}

// verified records and announces batch b's verdict.
func (p *Phase) verified(ctx context.Context, rec release.Record, b int, result events.CanaryResult, pass bool) error {
	rec, err := p.releases.Update(ctx, rec.ID, func(r *release.Record) error {
		if err := r.Expect(release.PhaseRolling); err != nil {
			return err
		}
		if r.Rolling.Verified != b || r.Rolling.Current != b {
			return fmt.Errorf("%w: batch %d of %s is not the one in hand", release.ErrStale, b+1, r.ID)
		}
		r.Report = &result
		if pass {
			r.Rolling.Verified = b + 1
		}
		return nil
	})
	if err != nil {
		return err
	}
	ro := rec.Rolling
	data := events.RollingBatch{Service: rec.Service, Group: rec.Group, Previous: rec.Previous, Batch: b + 1, Batches: len(ro.Batches),
		Slots: ro.SlotNames(rec.Service, b), Count: len(ro.Batches[b]), Took: time.Since(ro.BatchStarted), Report: &result}
	kind := events.RollingBatchDone
	if !pass {
		kind, data.Reason = events.RollingRollback, fmt.Sprintf("verify of batch %d failed: %s", b+1, result.Reason)
	}
	return natsx.Emit(ctx, p.js, Source, events.DerivedID(rec.ID, kind, b), kind, rec.Service, rec.ID, data)
}

// Package phase is the canary phase of a release: once the provisioner has
// launched the baseline (the version in production) and the canary (the new
// one), it gives each the spec's share of real traffic, judges the canary
// against the baseline every interval from the router's metrics samples,
// takes their traffic away again and emits canary.passed or canary.failed
// with the per-metric report. A release whose canary runs when the service
// restarts is picked up where its samples are.
package phase

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// Source is the CloudEvents source of the canary phase's events.
const Source = "redblack/canary"

// Durable is the name of the phase's consumer of accepted releases.
const Durable = topology.DurableCanaryPhase

// Phase runs the canary phase of every release.
type Phase struct {
	js        jetstream.JetStream
	services  jetstream.KeyValue
	instances jetstream.KeyValue
	routes    jetstream.KeyValue
	releases  release.Store
	analysis  jetstream.KeyValue
	// Reader reads the analysis templates' metrics from their providers.
	Reader   analysis.Reader
	log      zerolog.Logger
	runs     release.Runs
	verifies release.Runs // rolling releases' batches (verify.go)
	// known reports whether a sample publisher's id is one of the mesh's (nil: any).
	known func(publisher, id string) bool
	// Metrics, when set, count the verdicts.
	Metrics *Metrics
}

// New binds the phase to the buckets it reads. known reports whether a
// router id belongs to the mesh: samples from any other are dropped (nil:
// any router).
func New(ctx context.Context, js jetstream.JetStream, known func(publisher, id string) bool, log zerolog.Logger) (*Phase, error) {
	p := &Phase{js: js, log: log, runs: release.Runs{Log: log}, known: known}
	for name, kv := range map[string]*jetstream.KeyValue{topology.BucketServices: &p.services, topology.BucketInstances: &p.instances, topology.BucketRoutes: &p.routes, topology.BucketReleases: &p.releases.KV, topology.BucketAnalysis: &p.analysis} {
		var err error
		if *kv, err = natsx.Bucket(ctx, js, name); err != nil {
			return nil, fmt.Errorf("canary phase: bucket %s: %w", name, err)
		}
	}
	// copies of the canary service share the accepted releases; the lease
	// keeps each canary to one judge
	p.runs.Lease = &release.Lease{KV: p.releases.KV, Role: Durable, Owner: release.NewOwner("canary")}
	p.verifies = release.Runs{Log: log, Lease: &release.Lease{KV: p.releases.KV, Role: Durable + "-verify", Owner: p.runs.Lease.Owner}}
	return p, nil
}

// Start follows the releases bucket, so that every canary in flight has a
// run here (judging, or standing by while another copy holds its lease;
// those a restart interrupted resume), and consumes accepted releases. The
// runs stop when ctx ends; Wait waits for them.
func (p *Phase) Start(ctx context.Context) (*natsx.Consumer, error) {
	if err := release.Watch(ctx, p.releases.KV, p.log, func(r release.Record, _ bool) {
		if r.Previous != "" && !r.IsRolling() && (r.Phase == release.PhaseAccepted || r.Phase == release.PhaseCanary) {
			p.runs.Ensure(ctx, r.ID, p.run)
		}
		p.ensureVerify(ctx, r)
	}); err != nil {
		return nil, err
	}
	return natsx.Consume(ctx, p.js, natsx.ConsumerSpec{
		Stream: topology.StreamReleases, Durable: Durable, FilterSubjects: []string{events.ReleaseAccepted.Subject("*")},
		MaxDeliver: 20, AckWait: release.StepAckWait,
	}, func(hctx context.Context, msg jetstream.Msg) error {
		ev, err := events.Decode(msg.Data())
		if err != nil {
			return natsx.Permanent(err)
		}
		return p.accepted(hctx, ctx, ev.ReleaseID)
	}, p.log)
}

// Wait waits for every run to stop.
func (p *Phase) Wait() {
	p.runs.Wait()
	p.verifies.Wait()
}

// accepted passes a first release (nothing runs to compare it with) and
// starts the run of any other.
func (p *Phase) accepted(hctx, runCtx context.Context, id string) error {
	rec, _, err := p.releases.Get(hctx, id)
	if errors.Is(err, release.ErrNotFound) {
		return natsx.Permanent(err)
	}
	if err != nil {
		return err
	}
	if rec.Phase != release.PhaseAccepted && rec.Phase != release.PhaseCanary {
		return nil // already past the canary: a redelivery
	}
	if rec.IsRolling() {
		return nil // no canary phase: each batch is verified (verify.go)
	}
	if rec.Previous == "" {
		return p.emit(hctx, rec, events.CanaryPassed, events.CanaryResult{
			Service: rec.Service, Score: 100,
			Reason: "first release of " + rec.Service + ": nothing runs to compare with, so the canary is skipped",
		})
	}
	p.runs.Ensure(runCtx, id, p.run)
	return nil
}

// run is one release's canary phase. It returns ErrStale once the release
// has left the canary phase (a rollback took it).
func (p *Phase) run(ctx context.Context, id string) error {
	rec, _, err := p.releases.Get(ctx, id)
	if err != nil {
		return err
	}
	svc, err := spec.Get(ctx, p.services, rec.Service)
	if err != nil {
		return err
	}
	cs := svc.Strategy.Canary
	deadline := rec.EnteredAt(release.PhaseAccepted).Add(rec.CanaryDeadline(cs.Duration.D(), svc.Strategy.Deadlines.Canary.D()))
	cs.Duration = spec.Duration(rec.CanaryFor(cs.Duration.D()))
	svc.Strategy.Canary = cs
	if rec.Verdict != "" && rec.Report != nil && (rec.Phase == release.PhaseCanary || rec.Phase == release.PhaseAccepted) {
		// decided by a copy (or a run) that stopped before announcing it
		pass := rec.Verdict == VerdictPassed
		return p.finish(ctx, rec, verdictKind(rec, pass), *rec.Report, pass, cs.Duration.D())
	}
	log := p.log.With().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, id).Logger()

	// 1. both groups up
	rec, err = p.waitGroups(ctx, id, cs.Capacity, deadline)
	if err != nil {
		var late *lateError
		if errors.As(err, &late) {
			kind := events.CanaryFailed
			if rec.Calibration {
				kind = events.Calibrated
			}
			return p.finish(ctx, rec, kind, events.CanaryResult{Service: rec.Service, Canary: rec.Canary, Reason: late.Error()}, false, cs.Duration.D())
		}
		return err
	}
	// 2. their share of real traffic
	share := cs.Weight * routes.MaxWeight / 100
	if err := p.setWeights(ctx, rec, map[string]int{rec.Previous: routes.MaxWeight - 2*share, rec.Baseline: share, rec.Canary: share}); err != nil {
		return err
	}
	from := time.Now().UTC()
	if rec, err = p.releases.Update(ctx, id, func(r *release.Record) error {
		if err := r.Expect(release.PhaseCanary); err != nil {
			return err
		}
		if r.JudgeFrom.IsZero() {
			r.JudgeFrom = from
		}
		return nil
	}); err != nil {
		return err
	}
	if err := p.emit(ctx, rec, events.CanaryStarted, events.CanaryStart{Service: rec.Service, Baseline: rec.Baseline, Canary: rec.Canary, Weight: cs.Weight}); err != nil {
		return err
	}
	log.Info().Str("baseline", rec.Baseline).Str("canary", rec.Canary).Int("weight_percent", cs.Weight).Msg("canary started")

	// 3. judge every interval, the router's metrics and the templates'
	w := judged{baseline: rec.Baseline, canary: rec.Canary,
		start: rec.JudgeFrom, end: rec.JudgeFrom.Add(cs.Duration.D()), last: deadline.Add(-cs.Interval.D()), phase: release.PhaseCanary}
	if w.templates, err = analysis.Resolve(ctx, p.analysis, svc); err != nil {
		if !errors.Is(err, analysis.ErrNotFound) {
			return err
		}
		return p.finish(ctx, rec, verdictKind(rec, false), events.CanaryResult{Service: rec.Service, Canary: rec.Canary, Reason: "inconclusive: " + err.Error()}, false, cs.Duration.D())
	}
	w.vars = p.templateVars(ctx, rec, rec.Baseline, rec.Canary, rec.JudgeFrom)
	verdict, err := p.judge(ctx, rec, cs, w)
	if err != nil {
		return err
	}
	log.Info().Bool("pass", verdict.pass).Float64("score", verdict.result.Score).Str("reason", verdict.result.Reason).Bool("calibration", rec.Calibration).Msg("canary judged")
	return p.finish(ctx, rec, verdictKind(rec, verdict.pass), verdict.result, verdict.pass, cs.Duration.D())
}

// Verdicts kept in the record.
const (
	VerdictPassed = "passed"
	VerdictFailed = "failed"
)

// verdictKind is the event that announces a verdict.
func verdictKind(rec release.Record, pass bool) events.Kind {
	switch {
	case rec.Calibration:
		return events.Calibrated
	case pass:
		return events.CanaryPassed
	}
	return events.CanaryFailed
}

// finish takes the traffic away from the canary groups and announces the
// verdict; the report is kept in the release record. A calibration's
// verdict is announced as calibrated, with how close the judge came to
// failing the second group.
//
// The verdict is written first, so that a copy resuming the release
// announces it rather than judging again (and giving the canary its share
// back for a moment).
func (p *Phase) finish(ctx context.Context, rec release.Record, kind events.Kind, result events.CanaryResult, pass bool, duration time.Duration) error {
	rec, err := p.releases.Update(ctx, rec.ID, func(r *release.Record) error {
		if err := r.Expect(release.PhaseCanary, release.PhaseAccepted); err != nil {
			return err
		}
		r.Report, r.Verdict = &result, VerdictFailed
		if pass {
			r.Verdict = VerdictPassed
		}
		return nil
	})
	if err != nil {
		return err
	}
	if rec.Baseline != "" {
		if err := p.setWeights(ctx, rec, map[string]int{rec.Previous: routes.MaxWeight, rec.Baseline: 0, rec.Canary: 0}); err != nil {
			return err
		}
	}
	p.Metrics.observe(kind, result, rec.Service)
	if kind == events.Calibrated {
		c := events.Calibration{Service: rec.Service, Passed: pass, Duration: duration, Report: result}
		for _, m := range result.Metrics {
			if m.Peak >= c.Closest {
				c.Closest, c.ClosestMetric = m.Peak, m.Name
			}
		}
		return p.emit(ctx, rec, kind, c)
	}
	return p.emit(ctx, rec, kind, result)
}

func (p *Phase) emit(ctx context.Context, rec release.Record, k events.Kind, data any) error {
	return natsx.Emit(ctx, p.js, Source, events.DerivedID(rec.ID, k, 0), k, rec.Service, rec.ID, data)
}

// lateError: the canary groups were not up by the canary deadline.
type lateError struct{ what string }

func (e *lateError) Error() string { return e.what }

// waitGroups waits until the baseline and canary each have n instances up
// in discovery.
func (p *Phase) waitGroups(ctx context.Context, id string, n int, deadline time.Time) (release.Record, error) {
	for {
		rec, _, err := p.releases.Get(ctx, id)
		if err != nil {
			return rec, err
		}
		switch rec.Phase {
		case release.PhaseAccepted: // the provisioner has not started them yet
		case release.PhaseCanary:
			b, berr := discovery.Up(ctx, p.instances, rec.Service, rec.Baseline)
			c, cerr := discovery.Up(ctx, p.instances, rec.Service, rec.Canary)
			if err := errors.Join(berr, cerr); err != nil {
				// discovery unavailable is not "none up": wait, and say so
				// if the deadline passes
				if time.Now().After(deadline) {
					return rec, &lateError{fmt.Sprintf("canary deadline passed with discovery unavailable: %v", err)}
				}
				break
			}
			if len(b) >= n && len(c) >= n {
				return rec, nil
			}
			if time.Now().After(deadline) {
				return rec, &lateError{fmt.Sprintf("canary deadline passed with %d of %d baseline and %d of %d canary instances up", len(b), n, len(c), n)}
			}
		default:
			return rec, fmt.Errorf("%w: %s is %s", release.ErrStale, id, rec.Phase)
		}
		select {
		case <-ctx.Done():
			return rec, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// setWeights asks the router for the weights and waits until the routes
// bucket holds them.
func (p *Phase) setWeights(ctx context.Context, rec release.Record, w map[string]int) error {
	if p.hasWeights(ctx, rec.Service, w) {
		return nil
	}
	// a fresh id each time: weights are absolute, so a repeat is harmless,
	// while a command deduplicated against an earlier one (a resumed run
	// sending the same share again) would never be applied
	cause := fmt.Sprintf("%s:weights:%d:%s", events.DerivedID(rec.ID, events.CanaryStarted, 0), w[rec.Canary], events.NewID())
	if err := natsx.Emit(ctx, p.js, Source, cause, events.TrafficSet, rec.Service, rec.ID, events.TrafficCommand{Service: rec.Service, Weights: w}); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for !p.hasWeights(wctx, rec.Service, w) {
		select {
		case <-wctx.Done():
			return fmt.Errorf("canary phase: router did not apply weights %v to %s within 30s", w, rec.Service)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (p *Phase) hasWeights(ctx context.Context, service string, w map[string]int) bool {
	r, _, err := routes.Get(ctx, p.routes, service)
	return err == nil && r.Has(w)
}

// judged is what one judgement compares, and until when: it passes at end
// unless it failed, and with too little data fails at last; its
// checkpoints are written while the record is in phase.
type judged struct {
	baseline, canary string
	start, end, last time.Time
	phase            release.Phase
	// templates are the analysis templates judged beside the router's
	// metrics, read for the baseline (vars[0]) and the canary (vars[1]).
	templates []analysis.Template
	vars      [2]analysis.Vars
}

// templateVars are the templates' variables for the baseline group (of
// the version in production: the previous release's) and the canary
// group (of the release's version), for a judgement that began at since.
func (p *Phase) templateVars(ctx context.Context, rec release.Record, baseline, canary string, since time.Time) [2]analysis.Vars {
	vars := [2]analysis.Vars{{Service: rec.Service, Group: baseline, Since: since}, {Service: rec.Service, Group: canary, Version: rec.Version, Since: since}}
	if prev, err := p.releases.ReleaseOf(ctx, rec.Previous); err == nil {
		if r, _, err := p.releases.Get(ctx, prev); err == nil {
			vars[0].Version = r.Version
		}
	}
	return vars
}

// judge follows the baseline's and canary's samples from where the
// record's checkpoint left off (or JudgeFrom) and looks at least every
// second: the confidence sequences hold at any number of looks, so a bad
// canary fails as soon as the evidence allows. The evidence is checkpointed
// in the record every interval and at the verdict.
func (p *Phase) judge(ctx context.Context, rec release.Record, cs spec.Canary, w judged) (verdict, error) {
	j := NewJudge(cs)
	j.Analyze(w.templates, cs.Interval.D(), w.vars[1])
	cp, err := DecodeCheckpoint(rec.Checkpoint)
	if err != nil {
		p.log.Warn().Err(err).Str(logging.FieldRelease, rec.ID).Msg("canary checkpoint unreadable: judging again from the start")
		cp = Checkpoint{}
	}
	j.Checkpoint = cp
	filter := &metrics.Filter{Known: p.known, Log: p.log.With().Str(logging.FieldRelease, rec.ID).Logger()}
	filter.Resume(cp.Seen)
	since := metrics.Since(cp.Seen, rec.JudgeFrom)
	var mu sync.Mutex
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- metrics.Follow(fctx, p.js, topology.StreamMetrics, rec.Service, []string{w.baseline, w.canary}, since, filter, func(s metrics.Sample) bool {
			mu.Lock()
			defer mu.Unlock()
			j.Add(s, s.Group == w.baseline)
			return true
		})
	}()
	tick := min(cs.Interval.D(), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	// no data is never a pass, and is not waited for until the deadline
	// either: the judgement ends at its duration and grace
	end, last := w.end, w.last
	if grace := w.end.Add(spec.NoDataGrace(w.end.Sub(w.start), cs.Interval.D())); !w.start.IsZero() && grace.Before(last) {
		last = grace
	}
	// a look at the end itself, not at the next tick after it: a rolling
	// batch's verify ends on time
	atEnd := time.NewTimer(time.Until(end))
	defer atEnd.Stop()
	saved := time.Now()
	var read time.Time // the templates' last reading
	for {
		select {
		case <-ctx.Done():
			return verdict{}, ctx.Err()
		case err := <-errc:
			if err == nil {
				err = fmt.Errorf("canary phase: metrics of %s ended", rec.Service)
			}
			return verdict{}, err
		case <-t.C:
		case <-atEnd.C:
		}
		var rs analysis.Readings
		if j.Provided() && time.Since(read) >= cs.Interval.D() {
			read = time.Now()
			rs = j.ReadProviders(ctx, p.Reader, w.vars[0], w.vars[1]) // outside the lock: the network's time
		}
		now := time.Now()
		mu.Lock()
		if rs != nil {
			j.Observe(rs)
		}
		result, out := j.Look(!now.Before(end), now.After(last))
		save := out != Undecided || now.Sub(saved) >= cs.Interval.D()
		var b []byte
		if save { // marshalled under the lock: the follow goroutine adds to the same maps and slices
			cp := j.Checkpoint
			cp.Seen = filter.Seen()
			b, err = json.Marshal(cp)
		}
		mu.Unlock()
		if err != nil {
			return verdict{}, err
		}
		result.Service, result.Canary, result.DroppedSamples = rec.Service, w.canary, filter.Dropped()
		if !save {
			continue
		}
		saved = now
		if _, err := p.releases.Update(ctx, rec.ID, func(r *release.Record) error {
			if err := r.Expect(w.phase); err != nil {
				return err
			}
			r.Checkpoint = b
			r.Report = &result
			return nil
		}); err != nil {
			return verdict{}, err
		}
		if out != Undecided {
			return verdict{pass: out == Passed, result: result}, nil
		}
	}
}

// verdict ends a canary.
type verdict struct {
	pass   bool
	result events.CanaryResult
}

package watchdog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/anytime"
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

// The bake's rules, judged on confidence sequences (shared/anytime), so a
// healthy bake is rolled back at most 1 − confidence of the time over the
// whole bake and the watch after it, however long and however often it
// looks (every sample). The budget α is split in two families: one judges
// everything since the switch (a degradation from the start), the other
// judges fixed windows of the watch, window k at α/(π²k²) of each rule (a
// degradation that starts late, after days of healthy traffic that would
// dilute the first family); the windows' shares add up to half the budget.
// Each family has three rules with a third of its share each:
//
//   - errors against the old group: the new group's error rate (its
//     confidence sequence's lower bound) is above the old group's from just
//     before the switch (the upper bound of its interval) by more than
//     ErrorTolerance;
//   - errors against the ceiling: above MaxErrorRate (absolute);
//   - p99 latency: more of the new group's requests than the old group's 1 %
//     (its upper bound) are slower than MaxLatencyRatio × the old group's
//     p99, and the new p99 is also Slack above the old one.

// Rules are the bake's health rules for a group that takes all traffic.
type Rules struct {
	// MaxErrorRate is the absolute ceiling.
	MaxErrorRate float64
	// ErrorTolerance is the allowed increase over the reference's rate.
	ErrorTolerance float64
	// MaxLatencyRatio bounds the group's p99 against the reference's.
	MaxLatencyRatio float64
	// Alpha is the budget of the whole watch: 1 − confidence.
	Alpha float64
	// MinRequests in the reference and the judged span before the latency
	// rule applies.
	MinRequests uint64
	// Slack is a p99 increase too small to matter whatever the ratio: on a
	// sub-millisecond service, fresh connections after a switch double
	// the p99 without any user noticing.
	Slack time.Duration
}

// Span is what one family of the rules has seen: requests and errors, and
// the latency histogram of the requests after the warm-up.
type Span struct {
	Requests uint64         `json:"requests"`
	Errors   uint64         `json:"errors"`
	Latency  metrics.Totals `json:"latency"`
}

func (sp *Span) add(s metrics.Sample, warm bool) {
	sp.Requests += s.Requests
	sp.Errors += s.Errors()
	if warm {
		sp.Latency.Add(s)
	}
}

// Bake is the state of one release's health watch, checkpointed in its
// record: the old group's reference from before the switch, everything
// since the switch, and the current window.
type Bake struct {
	Switched  time.Time      `json:"switched"`
	Reference metrics.Totals `json:"reference"`
	All       Span           `json:"all"`
	Window    Span           `json:"window"`
	// WindowIndex is the current window's number, from 1.
	WindowIndex int `json:"window_index"`
	// Samples counts the samples of the new group judged: a bake that saw
	// none judged nothing and never passes.
	Samples int `json:"samples"`
	// Seen is the end of the last window counted per router and group.
	Seen map[string]time.Time `json:"seen,omitempty"`
}

// Add counts a sample of the new group: it goes into the window its start
// falls in (a new window resets the window span).
func (b *Bake) Add(s metrics.Sample, warmup, window time.Duration) {
	if b.WindowIndex == 0 {
		b.WindowIndex = 1
	}
	if k := int(s.Start.Sub(b.Switched)/window) + 1; k > b.WindowIndex {
		b.WindowIndex, b.Window = k, Span{}
	}
	warm := !s.Start.Before(b.Switched.Add(warmup))
	b.Samples++
	b.All.add(s, warm)
	b.Window.add(s, warm)
}

// Check returns why the watch breaks a rule ("" if it keeps them).
func (r Rules) Check(b Bake) string {
	half := r.Alpha / 2
	if why := r.check(b.Reference, b.All, half/3, "since the switch"); why != "" {
		return why
	}
	k := float64(max(b.WindowIndex, 1))
	return r.check(b.Reference, b.Window, half/3*6/(math.Pi*math.Pi*k*k), fmt.Sprintf("in window %d", b.WindowIndex))
}

// check applies the three rules to one span at level a each.
func (r Rules) check(ref metrics.Totals, sp Span, a float64, where string) string {
	if sp.Requests == 0 {
		return ""
	}
	rate, lo, _ := anytime.OneRate(float64(sp.Errors), float64(sp.Requests), a/2)
	if ref.Requests > 0 {
		refUp := anytime.FixedUpper(float64(ref.Errors), float64(ref.Requests), a/2)
		if lo-refUp > r.ErrorTolerance {
			return fmt.Sprintf("error rate %.2f%% (%d of %d requests %s) is above the old group's %.2f%% before the switch by more than %.2f points (at least %.2f%% against at most %.2f%%, %g%% confidence)",
				100*rate, sp.Errors, sp.Requests, where, 100*ref.ErrorRate(), 100*r.ErrorTolerance, 100*lo, 100*refUp, 100*(1-r.Alpha))
		}
	}
	if _, clo, _ := anytime.OneRate(float64(sp.Errors), float64(sp.Requests), a); clo > r.MaxErrorRate {
		return fmt.Sprintf("error rate %.2f%% (%d of %d requests %s) is above the ceiling %.2f%% (at least %.2f%%, %g%% confidence)",
			100*rate, sp.Errors, sp.Requests, where, 100*r.MaxErrorRate, 100*clo, 100*(1-r.Alpha))
	}
	lat := sp.Latency
	var n uint64
	for _, c := range lat.Latency {
		n += c
	}
	if ref.Requests < r.MinRequests || n < r.MinRequests {
		return ""
	}
	refP99 := metrics.HistQuantile(ref.Bounds, ref.Latency, 0.99)
	if refP99 <= 0 || len(lat.Bounds) != len(ref.Bounds) {
		return ""
	}
	var refN uint64
	for _, c := range ref.Latency {
		refN += c
	}
	over, under := metrics.Above(lat.Bounds, lat.Latency, r.MaxLatencyRatio*refP99)
	share, slo, _ := anytime.OneRate(over, over+under, a/2)
	refUp := anytime.FixedUpper(0.01*float64(refN), float64(refN), a/2)
	p99 := metrics.HistQuantile(lat.Bounds, lat.Latency, 0.99)
	if slo > refUp && time.Duration((p99-refP99)*float64(time.Microsecond)) > r.Slack {
		now, was := time.Duration(p99*float64(time.Microsecond)), time.Duration(refP99*float64(time.Microsecond))
		return fmt.Sprintf("p99 latency %s is %.1f× the old group's %s before the switch: %.2f%% of requests %s are slower than %.2f× it (at least %.2f%% against at most %.2f%%, %g%% confidence)",
			now.Round(time.Microsecond), p99/refP99, was.Round(time.Microsecond), 100*share, where, r.MaxLatencyRatio, 100*slo, 100*refUp, 100*(1-r.Alpha))
	}
	return ""
}

// MaxBakeCheckpointBytes bounds a bake checkpoint read back from a record.
const MaxBakeCheckpointBytes = 64 << 10

// DecodeBake reads a bake checkpoint (untrusted input: bounded and strict).
func DecodeBake(b []byte) (Bake, error) {
	var k Bake
	if len(b) > MaxBakeCheckpointBytes {
		return k, fmt.Errorf("bake checkpoint of %d bytes (at most %d)", len(b), MaxBakeCheckpointBytes)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&k); err != nil {
		return Bake{}, fmt.Errorf("bake checkpoint: %w", err)
	}
	for _, t := range []metrics.Totals{k.Reference, k.All.Latency, k.Window.Latency} {
		if t.Bounds != nil && (len(t.Latency) != len(t.Bounds)+1 || !metrics.ValidBounds(t.Bounds) || len(t.Bounds) > metrics.MaxBuckets) {
			return Bake{}, fmt.Errorf("bake checkpoint: a histogram of %d bounds and %d counts", len(t.Bounds), len(t.Latency))
		}
	}
	return k, nil
}

// switched starts the bake of a release whose traffic has moved.
func (s *Service) switched(ctx context.Context, msg jetstream.Msg) error {
	ev, err := events.Decode(msg.Data())
	if err != nil {
		return natsx.Permanent(err)
	}
	if ev.ReleaseID == "" {
		return nil // a switch by hand, outside any release
	}
	_, err = s.releases.Update(ctx, ev.ReleaseID, func(r *release.Record) error {
		return r.Step(release.ByWatchdog, events.TrafficSwitched, time.Now())
	})
	if errors.Is(err, release.ErrStale) || errors.Is(err, release.ErrNotFound) {
		return nil
	}
	return err // the release watch starts the bake when it sees the phase
}

// watch bakes a release and then, while the group it replaced is kept,
// keeps watching it: a degradation before baked or after completed is a
// rollback with the figures as the reason. Its state (with the old group's
// reference from before the switch) is checkpointed in the record, so a
// restart days into a bake resumes with the same evidence.
func (s *Service) watch(ctx context.Context, id string) error {
	rec, _, err := s.releases.Get(ctx, id)
	if err != nil {
		return err
	}
	svc, err := spec.Get(ctx, s.services, rec.Service)
	if err != nil {
		return err
	}
	switchedAt := rec.EnteredAt(release.PhaseSwitching)
	if switchedAt.IsZero() {
		return fmt.Errorf("%w: %s never switched", release.ErrStale, id)
	}
	bake := svc.Strategy.Bake
	rules := Rules{MaxErrorRate: bake.MaxErrorRate, ErrorTolerance: bake.ErrorTolerance, MaxLatencyRatio: bake.MaxLatencyRatio,
		Alpha: 1 - bake.Confidence, MinRequests: s.cfg.MinRequests, Slack: s.cfg.LatencySlack}
	log := s.log.With().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, id).Logger()
	var st Bake
	if len(rec.BakeCheckpoint) > 0 {
		if st, err = DecodeBake(rec.BakeCheckpoint); err != nil {
			log.Warn().Err(err).Msg("bake checkpoint unreadable: starting the watch again")
			st = Bake{}
		}
	}
	if st.Switched.IsZero() {
		st = Bake{Switched: switchedAt}
		if rec.Previous != "" {
			if st.Reference, err = s.reference(ctx, rec.Service, rec.Previous, switchedAt); err != nil {
				return err
			}
		}
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if err := s.checkpoint(ctx, id, b); err != nil {
			return err
		}
	}
	refP99 := time.Duration(metrics.HistQuantile(st.Reference.Bounds, st.Reference.Latency, 0.99) * float64(time.Microsecond))
	log.Info().Str("phase", string(rec.Phase)).Time("switched", switchedAt).Dur("bake", bake.Duration.D()).
		Uint64("reference_requests", st.Reference.Requests).Dur("reference_p99", refP99).Msg("health watch starts")

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	filter := &metrics.Filter{Known: s.known, Log: log}
	filter.Resume(st.Seen)
	var mu sync.Mutex
	var broken string
	var firstError time.Time // the new group's first failed request seen
	trip := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- metrics.Follow(wctx, s.js, topology.StreamMetrics, rec.Service, []string{rec.Group}, metrics.Since(st.Seen, switchedAt), filter, func(m metrics.Sample) bool {
			mu.Lock()
			defer mu.Unlock()
			st.Add(m, s.cfg.Warmup, s.cfg.Window)
			if !m.FirstError.IsZero() && (firstError.IsZero() || m.FirstError.Before(firstError)) {
				firstError = m.FirstError
			}
			if why := rules.Check(st); why != "" && broken == "" {
				broken = why
				trip <- struct{}{}
			}
			return true
		})
	}()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	saved := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			if err == nil {
				err = errors.New("metrics follow ended")
			}
			return err
		case <-trip:
		case <-t.C:
		}
		cur, _, err := s.releases.Get(ctx, id)
		if err != nil {
			return err
		}
		var snap []byte
		mu.Lock()
		why := broken
		samples := st.Samples
		failedAt := firstError
		// every Checkpoint, and at the verdict (baked, or a rollback), so the
		// record holds the evidence the decision was taken on
		verdict := cur.Phase == release.PhaseBaking && (why != "" || time.Since(switchedAt) >= bake.Duration.D())
		save := (verdict || time.Since(saved) >= s.cfg.Checkpoint) && (cur.Phase == release.PhaseBaking || cur.Phase == release.PhaseCompleted)
		if save { // marshalled under the lock: the follow goroutine adds to the same slices
			st.Seen = filter.Seen()
			snap, err = json.Marshal(st)
		}
		mu.Unlock()
		if err != nil {
			return err
		}
		if save {
			saved = time.Now()
			if err := s.checkpoint(ctx, id, snap); err != nil && !errors.Is(err, release.ErrStale) {
				return err
			}
		}
		log.Debug().Str("phase", string(cur.Phase)).Dur("since_switch", time.Since(switchedAt)).Str("broken", why).Msg("health watch")
		switch {
		case cur.Phase == release.PhaseBaking && why != "":
			log.Warn().Str("reason", why).Msg("bake failed")
			s.prom.rollback(cur.Service, failedAt)
			return s.requestRollback(ctx, cur, "bake", "bake: "+why)
		case cur.Phase == release.PhaseBaking && time.Since(switchedAt) >= bake.Duration.D() && samples == 0:
			// routers publish a sample of every routed group each interval,
			// traffic or not: none at all means nothing judged the bake
			if time.Since(switchedAt) >= bake.Duration.D()+NoSamplesGrace {
				return s.requestRollback(ctx, cur, "bake", fmt.Sprintf("bake: no metrics sample of %s in %s: nothing judged it (are the routers publishing?)", cur.Group, time.Since(switchedAt).Round(time.Second)))
			}
		case cur.Phase == release.PhaseBaking && time.Since(switchedAt) >= bake.Duration.D():
			log.Info().Msg("baked")
			if err := natsx.Emit(ctx, s.js, Source, events.DerivedID(id, events.Baked, 0), events.Baked, cur.Service, id,
				events.Bake{Service: cur.Service, Group: cur.Group, Duration: bake.Duration.D()}); err != nil {
				return err
			}
		case cur.Phase == release.PhaseCompleted:
			if !s.stillWatched(ctx, cur) {
				log.Info().Msg("health watch ends: the previous group is gone or a new release began")
				return nil
			}
			if why != "" {
				log.Warn().Str("reason", why).Msg("active group degraded after completion")
				s.prom.rollback(cur.Service, failedAt)
				return s.requestRollback(ctx, cur, "after", "after completion: "+why)
			}
		case cur.Phase == release.PhaseBaking:
		default:
			return nil // rolling back or ended
		}
	}
}

// NoSamplesGrace is how long past its duration a bake that has had no
// sample at all waits for one before it is rolled back.
// Longer than a leader election of METRICS after a node's loss (about 5–8 s
// here), whose samples the routers keep and publish late.
const NoSamplesGrace = 15 * time.Second

// checkpoint keeps the watch's state (a marshalled Bake) in the release
// record.
func (s *Service) checkpoint(ctx context.Context, id string, b []byte) error {
	_, err := s.releases.Update(ctx, id, func(r *release.Record) error {
		if err := r.Expect(release.PhaseBaking, release.PhaseCompleted); err != nil {
			return err
		}
		r.BakeCheckpoint = b
		return nil
	})
	return err
}

// stillWatched: a completed release is watched while its group has the
// traffic, the group it replaced is still alive, and no new release runs.
func (s *Service) stillWatched(ctx context.Context, rec release.Record) bool {
	r, _, err := routes.Get(ctx, s.routes, rec.Service)
	if err != nil || r.Active != rec.Group || r.Previous == "" {
		return false
	}
	if l, _, err := s.releases.Lock(ctx, rec.Service); err == nil && l.Release != rec.ID {
		return false
	}
	keys, err := natsx.Keys(ctx, s.instances, discovery.Key(rec.Service, r.Previous, "*"))
	return err == nil && len(keys) > 0
}

// reference sums the old group's samples of the span before the switch.
func (s *Service) reference(ctx context.Context, service, group string, at time.Time) (metrics.Totals, error) {
	var t metrics.Totals
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	filter := &metrics.Filter{Known: s.known, Log: s.log}
	err := metrics.Follow(rctx, s.js, topology.StreamMetrics, service, []string{group}, at.Add(-s.cfg.ReferenceSpan), filter, func(m metrics.Sample) bool {
		if m.End.After(at) {
			return false
		}
		t.Add(m)
		return true
	})
	// the follow ends at the first sample after the switch, or when the
	// stream has nothing newer (the timeout)
	if err != nil && rctx.Err() == nil {
		return t, err
	}
	return t, nil
}

// requestRollback publishes rollback.requested for the release.
func (s *Service) requestRollback(ctx context.Context, rec release.Record, tag, reason string) error {
	return natsx.Emit(ctx, s.js, Source, events.DerivedID(rec.ID, events.RollbackRequested, 0)+":"+tag, events.RollbackRequested, rec.Service, rec.ID,
		events.Rollback{Service: rec.Service, Group: rec.Group, Reason: reason, By: "watchdog"})
}

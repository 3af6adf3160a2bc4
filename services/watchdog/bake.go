package watchdog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/analysis"
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
// looks (every sample). The budget α is split in halves.
//
// The relative half compares the new group with the old one over the same
// seconds, during the bake: the old group keeps a slice of the traffic
// (spec bake.reference_weight), each request routed to it at random, so a
// change with time (a neighbour's load, a slow downstream) touches both
// alike. Two rules, α/4 each, on two-sample confidence sequences (the
// canary's):
//
//   - errors: the new group's error rate is above the old group's by more
//     than ErrorTolerance;
//   - p99 latency: each old request is counted against the old group's own
//     p99 x so far, each new request against MaxLatencyRatio·x (x taken
//     before the sample: predictable); more of the new group's requests
//     are past MaxLatencyRatio·x than of the old group's past x, and the new
//     p99 is also Slack above the old one.
//
// The absolute half holds during the bake and in the watch after it (when
// the old group has no traffic left): errors above MaxErrorRate, and, if
// set, more than 1 % of requests slower than MaxLatency. It is split over
// two families: everything since the switch (α/4), and fixed windows, window
// k at α/4·6/(π²k²) (a degradation that starts late, after days of healthy
// traffic that would dilute the first family).

// Rules are the bake's health rules.
type Rules struct {
	// MaxErrorRate is the absolute ceiling.
	MaxErrorRate float64
	// ErrorTolerance is the allowed increase over the old group's rate.
	ErrorTolerance float64
	// MaxLatencyRatio bounds the group's p99 against the old group's.
	MaxLatencyRatio float64
	// MaxLatency is the absolute p99 objective (0: none).
	MaxLatency time.Duration
	// Alpha is the budget of the whole watch: 1 − confidence.
	Alpha float64
	// MinRequests of each group (latency) before a latency rule applies.
	MinRequests uint64
	// Slack is a p99 increase too small to matter whatever the ratio: on a
	// sub-millisecond service, fresh connections after a switch double
	// the p99 without any user noticing.
	Slack time.Duration
	// Warmup: latency is not judged in samples that start within it of the
	// switch. Window is the length of the absolute rules' windows.
	Warmup, Window time.Duration
}

// Span is what one family of the rules has seen of a group: requests and
// errors, and the latency histogram of the requests after the warm-up.
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

// Same is the same-time comparison: the old group's slice and the new
// group, since the switch, and the latency rule's counts past thresholds
// (base: the old group past its own p99 so far; can: the new group past
// MaxLatencyRatio × it).
type Same struct {
	Old  Span          `json:"old"`
	New  Span          `json:"new"`
	Tail anytime.Rates `json:"tail"`
}

// Bake is the state of one release's health watch, checkpointed in its
// record: the same-time comparison, everything of the new group since the
// switch, and the current window.
type Bake struct {
	Switched time.Time `json:"switched"`
	Same     Same      `json:"same"`
	All      Span      `json:"all"`
	Window   Span      `json:"window"`
	// WindowIndex is the current window's number, from 1.
	WindowIndex int `json:"window_index"`
	// Samples counts the samples of the new group judged: a bake that saw
	// none judged nothing and never passes.
	Samples int `json:"samples"`
	// Seen is the end of the last window counted per router and group.
	Seen map[string]time.Time `json:"seen,omitempty"`
	// Providers is the evidence of the analysis templates' metrics, by
	// template/metric: the new group against the old group's slice.
	Providers map[string]*analysis.State `json:"providers,omitempty"`
}

// Add counts a sample of the old group's slice (old) or of the new group.
// A new group's sample goes into the window its start falls in (a new
// window resets the window span).
func (r Rules) Add(b *Bake, s metrics.Sample, old bool) {
	warm := !s.Start.Before(b.Switched.Add(r.Warmup))
	x := metrics.HistQuantile(b.Same.Old.Latency.Bounds, b.Same.Old.Latency.Latency, 0.99) // before this sample
	sameShape := len(s.Latency) == len(s.BucketsMicros)+1 && slices.Equal(s.BucketsMicros, b.Same.Old.Latency.Bounds)
	if old {
		if warm && x > 0 && sameShape {
			a, u := metrics.Above(s.BucketsMicros, s.Latency, x)
			b.Same.Tail.BaseEvents += a
			b.Same.Tail.BaseN += a + u
		}
		b.Same.Old.add(s, warm)
		return
	}
	if b.WindowIndex == 0 {
		b.WindowIndex = 1
	}
	if k := int(s.Start.Sub(b.Switched)/r.Window) + 1; k > b.WindowIndex {
		b.WindowIndex, b.Window = k, Span{}
	}
	if warm && x > 0 && sameShape {
		a, u := metrics.Above(s.BucketsMicros, s.Latency, r.MaxLatencyRatio*x)
		b.Same.Tail.CanEvents += a
		b.Same.Tail.CanN += a + u
	}
	b.Samples++
	b.All.add(s, warm)
	b.Window.add(s, warm)
	b.Same.New.add(s, warm)
}

// Check returns why the watch breaks a rule ("" if it keeps them). baking
// says the relative rules apply (the old group has its slice); after the
// bake only the absolute ones do.
func (r Rules) Check(b Bake, baking bool) string {
	q := r.Alpha / 4
	if baking {
		if why := r.relative(b.Same, q); why != "" {
			return why
		}
	}
	if why := r.absolute(b.All, q, "since the switch"); why != "" {
		return why
	}
	k := float64(max(b.WindowIndex, 1))
	return r.absolute(b.Window, q*6/(math.Pi*math.Pi*k*k), fmt.Sprintf("in window %d", b.WindowIndex))
}

// relative applies the same-time rules at level a each.
func (r Rules) relative(sm Same, a float64) string {
	if sm.Old.Requests == 0 || sm.New.Requests == 0 {
		return ""
	}
	errs := anytime.Rates{BaseEvents: float64(sm.Old.Errors), BaseN: float64(sm.Old.Requests), CanEvents: float64(sm.New.Errors), CanN: float64(sm.New.Requests)}
	if est, v := errs.Diff(); anytime.Beyond(est, v, r.ErrorTolerance, a) {
		_, lo, _ := errs.Interval(a)
		return fmt.Sprintf("error rate %.2f%% (%d of %d requests since the switch) is above the old group's %.2f%% over the same seconds (%d of %d) by %+.2f points, more than %.2f (at least %+.2f points, %g%% confidence)",
			100*safeRate(sm.New.Errors, sm.New.Requests), sm.New.Errors, sm.New.Requests, 100*safeRate(sm.Old.Errors, sm.Old.Requests), sm.Old.Errors, sm.Old.Requests,
			100*est, 100*r.ErrorTolerance, 100*lo, 100*(1-r.Alpha))
	}
	t := sm.Tail
	if t.BaseN < float64(r.MinRequests) || t.CanN < float64(r.MinRequests) {
		return ""
	}
	oldP99 := metrics.HistQuantile(sm.Old.Latency.Bounds, sm.Old.Latency.Latency, 0.99)
	newP99 := metrics.HistQuantile(sm.New.Latency.Bounds, sm.New.Latency.Latency, 0.99)
	if est, v := t.Diff(); anytime.Beyond(est, v, 0, a) && time.Duration((newP99-oldP99)*float64(time.Microsecond)) > r.Slack {
		_, lo, _ := t.Interval(a)
		now, was := time.Duration(newP99*float64(time.Microsecond)), time.Duration(oldP99*float64(time.Microsecond))
		return fmt.Sprintf("p99 latency %s is %.1f× the old group's %s over the same seconds: %.2f%% of its requests are slower than %.2f× the old group's p99, against %.2f%% of the old group's past it (%+.2f points, at least %+.2f, %g%% confidence)",
			now.Round(time.Microsecond), newP99/oldP99, was.Round(time.Microsecond), 100*t.CanEvents/t.CanN, r.MaxLatencyRatio, 100*t.BaseEvents/t.BaseN, 100*est, 100*lo, 100*(1-r.Alpha))
	}
	return ""
}

// absolute applies the objectives to one span of the new group at level a
// (split between the two rules when MaxLatency is set).
func (r Rules) absolute(sp Span, a float64, where string) string {
	if sp.Requests == 0 {
		return ""
	}
	if r.MaxLatency > 0 {
		a /= 2
	}
	if anytime.OneRateAbove(float64(sp.Errors), float64(sp.Requests), r.MaxErrorRate, a) {
		rate, lo, _ := anytime.OneRate(float64(sp.Errors), float64(sp.Requests), a)
		return fmt.Sprintf("error rate %.2f%% (%d of %d requests %s) is above the ceiling %.2f%% (at least %.2f%%, %g%% confidence)",
			100*rate, sp.Errors, sp.Requests, where, 100*r.MaxErrorRate, 100*lo, 100*(1-r.Alpha))
	}
	if r.MaxLatency <= 0 {
		return ""
	}
	over, under := metrics.Above(sp.Latency.Bounds, sp.Latency.Latency, float64(r.MaxLatency/time.Microsecond))
	if over+under < float64(r.MinRequests) {
		return ""
	}
	if anytime.OneRateAbove(over, over+under, 0.01, a) {
		share, lo, _ := anytime.OneRate(over, over+under, a)
		p99 := time.Duration(metrics.HistQuantile(sp.Latency.Bounds, sp.Latency.Latency, 0.99) * float64(time.Microsecond))
		return fmt.Sprintf("p99 latency %s %s is above the objective %s: %.2f%% of requests are slower than it (at least %.2f%%, more than 1%%, %g%% confidence)",
			p99.Round(time.Microsecond), where, r.MaxLatency, 100*share, 100*lo, 100*(1-r.Alpha))
	}
	return ""
}

func safeRate(e, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(e) / float64(n)
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
	for _, t := range []metrics.Totals{k.Same.Old.Latency, k.Same.New.Latency, k.All.Latency, k.Window.Latency} {
		if t.Bounds != nil && (len(t.Latency) != len(t.Bounds)+1 || !metrics.ValidBounds(t.Bounds) || len(t.Bounds) > metrics.MaxBuckets) {
			return Bake{}, fmt.Errorf("bake checkpoint: a histogram of %d bounds and %d counts", len(t.Bounds), len(t.Latency))
		}
	}
	if !k.Same.Tail.Valid() {
		return Bake{}, errors.New("bake checkpoint: latency counts that cannot be real")
	}
	if len(k.Providers) > spec.MaxAnalysis*analysis.MaxMetrics {
		return Bake{}, fmt.Errorf("bake checkpoint: %d template metrics", len(k.Providers))
	}
	for _, ps := range k.Providers {
		if ps == nil || !ps.Valid() {
			return Bake{}, errors.New("bake checkpoint: analysis readings that cannot be real")
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
// rollback with the figures as the reason. During the bake it follows the
// old group's slice of the traffic too, the same-time reference. Its state
// is checkpointed in the record, so a restart days into a bake resumes
// with the same evidence.
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
	rules := RulesOf(bake, s.cfg)
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
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if err := s.checkpoint(ctx, id, b); err != nil {
			return err
		}
	}
	groups := []string{rec.Group}
	if rec.Previous != "" && bake.Reference() > 0 {
		groups = append(groups, rec.Previous) // its slice of the traffic: the same-time reference
	}
	tj, vars, err := s.templates(ctx, rec, svc, &rules, len(groups) > 1 && rec.Phase == release.PhaseBaking, switchedAt)
	if errors.Is(err, analysis.ErrNotFound) {
		// a template named by the spec is gone: no data is never a pass
		return s.requestRollback(ctx, rec, "bake", "bake: inconclusive: "+err.Error())
	}
	if err != nil {
		return err
	}
	if len(svc.Strategy.Analysis) > 0 && tj.Len() == 0 && rec.Phase == release.PhaseBaking {
		log.Info().Strs("analysis", svc.Strategy.Analysis).Msg("no same-time reference in this bake (a first release, or reference_weight 0): the analysis templates are not judged in it")
	}
	log.Info().Str("phase", string(rec.Phase)).Time("switched", switchedAt).Dur("bake", bake.Duration.D()).
		Str("reference", rec.Previous).Int("reference_weight", bake.Reference()).Uint64("reference_requests", st.Same.Old.Requests).Msg("health watch starts")

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	filter := &metrics.Filter{Known: s.known, Log: log}
	filter.Resume(st.Seen)
	var mu sync.Mutex
	var broken string
	baking := rec.Phase != release.PhaseCompleted // the relative rules apply
	var firstError time.Time                      // the new group's first failed request seen
	trip := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- metrics.Follow(wctx, s.js, topology.StreamMetrics, rec.Service, groups, metrics.Since(st.Seen, switchedAt), filter, func(m metrics.Sample) bool {
			mu.Lock()
			defer mu.Unlock()
			old := m.Group != rec.Group
			if old && !baking {
				return true // the slice is back on the new group: absolute rules only
			}
			rules.Add(&st, m, old)
			if !old && !m.FirstError.IsZero() && (firstError.IsZero() || m.FirstError.Before(firstError)) {
				firstError = m.FirstError
			}
			if why := rules.Check(st, baking); why != "" && broken == "" {
				broken = why
				trip <- struct{}{}
			}
			return true
		})
	}()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	saved := time.Now()
	var read time.Time // the templates' last reading
	var inconclusive []string
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
		// the templates' metrics, read every interval during the bake
		// (outside the lock: the network's time)
		var rs analysis.Readings
		if tj.Len() > 0 && cur.Phase == release.PhaseBaking && time.Since(read) >= tj.Every {
			read = time.Now()
			rs = tj.Read(ctx, s.reader, vars[0], vars[1])
		}
		var snap []byte
		mu.Lock()
		baking = cur.Phase == release.PhaseBaking
		if rs != nil {
			st.Providers = tj.Observe(st.Providers, rs)
			vs := tj.Look(st.Providers)
			for _, v := range vs {
				if v.Bad != "" && broken == "" {
					broken = "analysis: " + v.Bad
				}
			}
			inconclusive = analysis.Inconclusive(vs, false)
		}
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
		case cur.Phase == release.PhaseBaking && time.Since(switchedAt) >= bake.Duration.D() && len(inconclusive) > 0:
			// no data is never a pass: the templates' metrics get the
			// canary's grace, then the bake fails as inconclusive
			if time.Since(switchedAt) >= bake.Duration.D()+spec.NoDataGrace(bake.Duration.D(), tj.Every) {
				return s.requestRollback(ctx, cur, "bake", "bake: inconclusive: "+strings.Join(inconclusive, "; "))
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

// templates makes the judge of the service's analysis templates for a
// bake with a same-time reference (none without one: the templates are
// relative): each metric a critical share of the bake's budget, as in the
// canary, taken from rules' Alpha; and the variables of the reference (the
// old group) and of the new group, since the switch.
func (s *Service) templates(ctx context.Context, rec release.Record, svc spec.Service, rules *Rules, reference bool, switched time.Time) (*analysis.Judge, [2]analysis.Vars, error) {
	tj := &analysis.Judge{}
	vars := [2]analysis.Vars{{Service: rec.Service, Group: rec.Previous, Since: switched}, {Service: rec.Service, Group: rec.Group, Version: rec.Version, Since: switched}}
	if !reference || len(svc.Strategy.Analysis) == 0 {
		return tj, vars, nil
	}
	ts, err := analysis.Resolve(ctx, s.analysis, svc)
	if err != nil {
		return tj, vars, fmt.Errorf("bake of %s: %w", rec.ID, err)
	}
	tj.Add(ts)
	cs := svc.Strategy.Canary
	n := float64(tj.Len())
	tj.Every, tj.MinSamples, tj.Canary = cs.Interval.D(), cs.MinSamples, vars[1]
	tj.Alpha = rules.Alpha * 2 / (4 + 2*n) // the bake's four rules keep one share each
	rules.Alpha *= 4 / (4 + 2*n)
	if prev, err := s.releases.ReleaseOf(ctx, rec.Previous); err == nil {
		if r, _, err := s.releases.Get(ctx, prev); err == nil {
			vars[0].Version = r.Version
		}
	}
	return tj, vars, nil
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

// requestRollback publishes rollback.requested for the release.
func (s *Service) requestRollback(ctx context.Context, rec release.Record, tag, reason string) error {
	return natsx.Emit(ctx, s.js, Source, events.DerivedID(rec.ID, events.RollbackRequested, 0)+":"+tag, events.RollbackRequested, rec.Service, rec.ID,
		events.Rollback{Service: rec.Service, Group: rec.Group, Reason: reason, By: "watchdog"})
}

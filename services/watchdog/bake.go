package watchdog

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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

// Rules are the bake's health rules for a group that takes all traffic.
type Rules struct {
	// MaxErrorRate may not be exceeded (significantly: see Check).
	MaxErrorRate float64
	// MaxLatencyRatio bounds the group's p99 against Reference's.
	MaxLatencyRatio float64
	// Reference is the old group's figures from just before the switch
	// (no requests: the latency rule is off).
	Reference metrics.Totals
	// MinRequests in the window before the latency rule applies.
	MinRequests uint64
	// Slack is a p99 increase too small to matter whatever the ratio: on a
	// sub-millisecond service, fresh connections after a switch double
	// the p99 without any user noticing.
	Slack time.Duration
}

// Alpha is the significance of the error rule: the window's errors must be
// unlikely (p < Alpha) under the allowed rate, so one unlucky error among a
// few requests does not roll a healthy release back.
const Alpha = 0.001

// Check returns why the windows break a rule ("" if they keep them): w for
// the error rule, lat (the samples after the warm-up) for the latency rule.
func (r Rules) Check(w, lat metrics.Totals) string {
	if w.Errors > 0 && BinomialTail(int(w.Errors), int(w.Requests), r.MaxErrorRate) < Alpha {
		return fmt.Sprintf("error rate %.1f%% (%d of %d requests) is above the maximum %.1f%%",
			100*w.ErrorRate(), w.Errors, w.Requests, 100*r.MaxErrorRate)
	}
	if r.Reference.Requests >= r.MinRequests && lat.Requests >= r.MinRequests {
		ref, now := r.Reference.Quantile(0.99), lat.Quantile(0.99)
		if ref > 0 && float64(now) > r.MaxLatencyRatio*float64(ref) && now-ref > r.Slack {
			return fmt.Sprintf("p99 latency %s is %.1f× the old group's %s before the switch (maximum %.1f×)",
				now.Round(time.Microsecond), float64(now)/float64(ref), ref.Round(time.Microsecond), r.MaxLatencyRatio)
		}
	}
	return ""
}

// BinomialTail is P(X ≥ k) for X ~ Binomial(n, p).
func BinomialTail(k, n int, p float64) float64 {
	if k <= 0 {
		return 1
	}
	if k > n || p <= 0 {
		return 0
	}
	if p >= 1 {
		return 1
	}
	lp, lq := math.Log(p), math.Log1p(-p)
	sum := 0.0
	for i := k; i <= n; i++ {
		lg1, _ := math.Lgamma(float64(n + 1))
		lg2, _ := math.Lgamma(float64(i + 1))
		lg3, _ := math.Lgamma(float64(n - i + 1))
		term := math.Exp(lg1 - lg2 - lg3 + float64(i)*lp + float64(n-i)*lq)
		sum += term
		if term < sum*1e-12 && float64(i) > float64(n)*p {
			break
		}
	}
	return min(sum, 1)
}

// Window keeps the samples of the last span (by their end time).
type Window struct {
	Span    time.Duration
	samples []metrics.Sample
}

// Add puts a sample in and drops the ones older than the span.
func (w *Window) Add(s metrics.Sample) {
	w.samples = append(w.samples, s)
	cut := 0
	for cut < len(w.samples) && s.End.Sub(w.samples[cut].End) > w.Span {
		cut++
	}
	w.samples = w.samples[cut:]
}

// Totals sums the window.
func (w *Window) Totals() metrics.Totals {
	var t metrics.Totals
	for _, s := range w.samples {
		t.Add(s)
	}
	return t
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
		return r.Advance(release.PhaseBaking, time.Now(), release.PhaseSwitching)
	})
	if errors.Is(err, release.ErrStale) || errors.Is(err, release.ErrNotFound) {
		return nil
	}
	return err // the release watch starts the bake when it sees the phase
}

// watch bakes a release and then, while the group it replaced is kept,
// keeps watching it: a degradation before baked or after completed is a
// rollback with the figures as the reason.
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
	rules := Rules{MaxErrorRate: bake.MaxErrorRate, MaxLatencyRatio: bake.MaxLatencyRatio, MinRequests: s.cfg.MinRequests, Slack: s.cfg.LatencySlack}
	if rec.Previous != "" {
		if rules.Reference, err = s.reference(ctx, rec.Service, rec.Previous, switchedAt); err != nil {
			return err
		}
	}
	log := s.log.With().Str(logging.FieldService, rec.Service).Str(logging.FieldRelease, id).Logger()
	log.Info().Str("phase", string(rec.Phase)).Time("switched", switchedAt).Dur("bake", bake.Duration.D()).
		Uint64("reference_requests", rules.Reference.Requests).Dur("reference_p99", rules.Reference.Quantile(0.99)).Msg("health watch starts")

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var broken string
	window, latency := Window{Span: s.cfg.Window}, Window{Span: s.cfg.Window}
	warm := switchedAt.Add(s.cfg.Warmup)
	trip := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- metrics.Follow(wctx, s.js, topology.StreamMetrics, rec.Service, []string{rec.Group}, switchedAt, func(m metrics.Sample) bool {
			mu.Lock()
			defer mu.Unlock()
			window.Add(m)
			if !m.Start.Before(warm) {
				latency.Add(m)
			}
			if why := rules.Check(window.Totals(), latency.Totals()); why != "" && broken == "" {
				broken = why
				trip <- struct{}{}
			}
			return true
		})
	}()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
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
		mu.Lock()
		why := broken
		mu.Unlock()
		log.Debug().Str("phase", string(cur.Phase)).Dur("since_switch", time.Since(switchedAt)).Str("broken", why).Msg("health watch")
		switch {
		case cur.Phase == release.PhaseBaking && why != "":
			log.Warn().Str("reason", why).Msg("bake failed")
			return s.requestRollback(ctx, cur, "bake", "bake: "+why)
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
				return s.requestRollback(ctx, cur, "after", "after completion: "+why)
			}
		case cur.Phase == release.PhaseBaking:
		default:
			return nil // rolling back or ended
		}
	}
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
	lister, err := s.instances.ListKeysFiltered(ctx, discovery.Key(rec.Service, r.Previous, "*"))
	if err != nil {
		return false
	}
	for range lister.Keys() {
		return true
	}
	return false
}

// reference sums the old group's samples of the span before the switch.
func (s *Service) reference(ctx context.Context, service, group string, at time.Time) (metrics.Totals, error) {
	var t metrics.Totals
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := metrics.Follow(rctx, s.js, topology.StreamMetrics, service, []string{group}, at.Add(-s.cfg.ReferenceSpan), func(m metrics.Sample) bool {
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

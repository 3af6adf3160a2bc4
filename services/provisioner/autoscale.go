package provisioner

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/loop"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// AutoscalerRole is the lease role of the one local provisioner that
// sizes the serving groups of services with an autoscale spec. (On aws the
// Auto Scaling group's own target-tracking policy does.)
const AutoscalerRole = "provisioner-autoscaler"

// AutoscaleEvery is how often the autoscaler looks at the load.
const AutoscaleEvery = time.Second

// autoscale sizes, while this copy holds the autoscaler's lease, the
// serving group (the route's active group) of every service whose spec
// asks for it: the group's requests per second, from the traffic samples
// of every router and discovery client, over the spec's window, divided by
// the target per instance, rounded up within min..max. A change waits out
// its cooldown; a scale down also a whole window after any change, so that
// it is judged on the load the new size carries. Each change is a
// servergroup.resized on FLEET with the load that made it.
func (s *Service) autoscale(ctx context.Context) {
	s.lead(ctx, AutoscalerRole, func(ctx context.Context) error {
		a := &autoscaler{s: s, loads: map[string]*load{}, cpu: map[string]*load{}, cpuSeen: map[string]cpuReading{}, changed: map[string]time.Time{}, serving: map[string]string{}, following: map[string]context.CancelFunc{},
			started: time.Now(), sources: &metrics.Directory{NC: s.nc}}
		defer a.stopAll()
		loop.Every(ctx, AutoscaleEvery, func() {
			natsx.Guard(s.log, "autoscale", func() { a.tick(ctx) })
		})
		return nil
	})
}

type autoscaler struct {
	s         *Service
	mu        sync.Mutex
	loads     map[string]*load      // requests, by group
	cpu       map[string]*load      // CPU seconds, by group (target_cpu)
	cpuSeen   map[string]cpuReading // the last reading of each instance, by id
	changed   map[string]time.Time  // by group: its last change by the autoscaler, or when it became the serving group
	serving   map[string]string     // by service: its serving group last seen
	following map[string]context.CancelFunc
	started   time.Time // when this copy took the lease
	sources   *metrics.Directory
}

// load is one group's requests in the samples of the last window.
type load struct {
	first time.Time
	spans []span
}

type span struct {
	end    time.Time
	amount float64 // requests, or CPU seconds
}

// rate is the amount per second (requests, or CPU seconds: cores busy)
// over the window ending at now, or over
// the time since the first sample or since, when that is shorter (a group
// that has just become the serving one is judged on its traffic since).
func (l *load) rate(now time.Time, window time.Duration, since time.Time) float64 {
	from := now.Add(-window)
	keep := l.spans[:0]
	var n float64
	for _, sp := range l.spans {
		if sp.end.After(from) {
			keep = append(keep, sp)
			if sp.end.After(since) {
				n += sp.amount
			}
		}
	}
	l.spans = keep
	span := min(window, now.Sub(l.first), now.Sub(since))
	if span < time.Second {
		return -1 // too little seen to say
	}
	return n / span.Seconds()
}

func (a *autoscaler) stopAll() {
	for _, stop := range a.following {
		stop()
	}
}

// tick looks at every autoscaled service once.
func (a *autoscaler) tick(ctx context.Context) {
	s := a.s
	specs, err := spec.List(ctx, s.services)
	if err != nil {
		s.log.Warn().Err(err).Msg("autoscale: list the specs")
		return
	}
	want := map[string]bool{}
	for _, svc := range specs {
		if svc.Autoscale == nil || svc.Provider != spec.ProviderLocal {
			continue
		}
		want[svc.Name] = true
		if a.following[svc.Name] == nil {
			a.follow(ctx, svc.Name)
		}
		if err := a.size(ctx, svc); err != nil {
			s.log.Warn().Err(err).Str(logging.FieldService, svc.Name).Msg("autoscale")
		}
	}
	for name, stop := range a.following {
		if !want[name] {
			stop()
			delete(a.following, name)
		}
	}
}

// follow reads the service's samples from now on, by group.
func (a *autoscaler) follow(ctx context.Context, service string) {
	fctx, stop := context.WithCancel(ctx)
	a.following[service] = stop
	filter := &metrics.Filter{Known: a.sources.Known, Log: a.s.log}
	go func() {
		err := metrics.Follow(fctx, a.s.js, topology.StreamMetrics, service, []string{">"}, time.Time{}, filter, func(m metrics.Sample) bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			l := a.loads[m.Group]
			if l == nil {
				l = &load{first: m.Start}
				a.loads[m.Group] = l
			}
			l.spans = append(l.spans, span{m.End, float64(m.Requests)})
			return true
		})
		if err != nil && fctx.Err() == nil {
			a.s.log.Warn().Err(err).Str(logging.FieldService, service).Msg("autoscale: samples")
		}
	}()
}

// size resizes the service's serving group when its load asks for it.
func (a *autoscaler) size(ctx context.Context, svc spec.Service) error {
	s, as := a.s, *svc.Autoscale
	r, _, err := routes.Get(ctx, s.routes, svc.Name)
	if err != nil || r.Active == "" || r.Weights[r.Active] == 0 {
		return nil // nothing serves yet, or the route is unreadable: next tick
	}
	g, err := s.provider.DescribeGroup(ctx, r.Active)
	if err != nil {
		return err
	}
	now := time.Now()
	if a.serving[svc.Name] != r.Active {
		// a switch: the new group's load is what it carries from now on,
		// and it waits a cooldown (the first one seen: since the lease)
		since := now
		if a.serving[svc.Name] == "" {
			since = a.started
		}
		a.serving[svc.Name], a.changed[r.Active] = r.Active, since
	}
	last := a.changed[r.Active]
	rate, unit := -1.0, "requests/s"
	if as.TargetCPU > 0 {
		if err := a.readCPU(ctx, r.Active, now); err != nil {
			return err
		}
		if l := a.cpu[r.Active]; l != nil {
			rate, unit = 100*l.rate(now, as.Window.D(), last), "% CPU"
		}
	} else {
		a.mu.Lock()
		if l := a.loads[r.Active]; l != nil {
			rate = l.rate(now, as.Window.D(), last)
		}
		a.mu.Unlock()
	}
	if rate < 0 {
		return nil // not enough of its load seen yet
	}
	current, desired := g.Desired, as.Desired(rate)
	switch {
	case desired > current && now.Sub(last) >= as.ScaleUpCooldown.D():
	case desired < current && now.Sub(last) >= max(as.ScaleDownCooldown.D(), as.Window.D()):
	case current < as.Min || current > as.Max:
		desired = min(max(current, as.Min), as.Max) // the spec's bounds changed
	default:
		return nil
	}
	if desired == current {
		return nil
	}
	reason := fmt.Sprintf("autoscale: %.1f %s over %d instances (%.1f each), target %s: %d → %d",
		rate, unit, current, rate/float64(max(current, 1)), as, current, desired)
	if err := s.provider.Resize(ctx, r.Active, desired); err != nil {
		return err
	}
	a.changed[r.Active] = now
	s.log.Info().Str(logging.FieldService, svc.Name).Str(logging.FieldServerGroup, r.Active).Int("from", current).Int("to", desired).Float64("load", rate).Str("unit", unit).Msg("autoscaled")
	cause := fmt.Sprintf("autoscale:%s:%d", r.Active, now.UnixNano())
	if err := s.track(ctx, r.Active, svc.Name, desired, false, cause, ""); err != nil {
		return err
	}
	return s.publish(ctx, cause+":resized", events.ServerGroupResized, svc.Name, events.ServerGroup{Service: svc.Name, Group: r.Active, Capacity: desired, Reason: reason})
}

// cpuReading is an instance's CPU time used, read at a time.
type cpuReading struct {
	at   time.Time
	used time.Duration
}

// readCPU adds the CPU its instances used since the last reading to the
// group's CPU load.
func (a *autoscaler) readCPU(ctx context.Context, group string, now time.Time) error {
	m, ok := a.s.provider.(fleet.CPUMeter)
	if !ok {
		return fmt.Errorf("target_cpu: the provider does not measure CPU")
	}
	used, err := m.CPU(ctx, group)
	if err != nil {
		return err
	}
	var delta time.Duration
	for id, u := range used {
		if prev, ok := a.cpuSeen[id]; ok && u >= prev.used {
			delta += u - prev.used
		}
		a.cpuSeen[id] = cpuReading{now, u}
	}
	l := a.cpu[group]
	if l == nil {
		l = &load{first: now}
		a.cpu[group] = l
		return nil // the first reading is the baseline
	}
	l.spans = append(l.spans, span{now, delta.Seconds()})
	return nil
}

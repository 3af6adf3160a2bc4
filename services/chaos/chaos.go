// Package chaos is the chaos service: Chaos Monkey. Every tick it plans each
// opted-in service's kills (a coin per work day and group, a random minute in
// the window; or, in the fast mode, per second) and carries out the ones
// due through the monkey, which checks, kills through the provisioner and
// records every attempt as an event. It also answers schedule and on-demand
// kill requests.
package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/chaos/monkey"
	"github.com/redblack/redblack/shared/loop"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/prom"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// Version of the service.
const Version = "0.2.0"

// Config configures the chaos service.
type Config struct {
	Topology topology.Options
	// Seed makes every chaos instance plan the same kills (default 1).
	Seed uint64
	// Tick is how often due kills are looked for (default 100 ms).
	Tick time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Topology: topology.DefaultOptions(), Seed: 1, Tick: 100 * time.Millisecond}
}

// Service is the chaos service.
type Service struct {
	cfg Config
	nc  *nats.Conn
	log zerolog.Logger
	m   *monkey.Monkey

	mu    sync.Mutex
	fired map[string]time.Time // unit@time of kills carried out
	kills int

	killsTotal *prometheus.CounterVec
}

// Collectors are Chaos Monkey's metrics.
func (s *Service) Collectors() []prometheus.Collector { return []prometheus.Collector{s.killsTotal} }

// killed counts a kill carried out.
func (s *Service) killed(service string) {
	s.mu.Lock()
	s.kills++
	s.mu.Unlock()
	s.killsTotal.WithLabelValues(service).Inc()
}

// New builds the service on a NATS connection it does not own.
func New(cfg Config, nc *nats.Conn, log zerolog.Logger) *Service {
	d := DefaultConfig()
	if cfg.Seed == 0 {
		cfg.Seed = d.Seed
	}
	if cfg.Tick <= 0 {
		cfg.Tick = d.Tick
	}
	return &Service{cfg: cfg, nc: nc, log: log, fired: map[string]time.Time{},
		killsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: prom.Namespace, Name: "chaos_kills_total",
			Help: "Instances Chaos Monkey terminated (scheduled or on demand)."}, []string{"service"})}
}

// Run plans and carries out kills and serves the micro endpoints (status,
// schedule, kill) until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	js, err := natsx.Open(ctx, s.nc, func(ctx context.Context, js jetstream.JetStream) error {
		return topology.Prepare(ctx, js, s.cfg.Topology)
	})
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.m, err = monkey.Open(octx, js, time.Now, s.log); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); s.loop(ctx, &wg) }()
	started := time.Now().UTC()
	return natsx.Serve(ctx, s.nc, natsx.MicroConfig{
		Name: "chaos", Version: Version, Description: "Chaos Monkey: kills instances at random",
		Status: func() any {
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, _, _ := monkey.GetConfig(cctx, s.m.Chaos)
			s.mu.Lock()
			kills := s.kills
			s.mu.Unlock()
			return natsx.Status{Service: "chaos", Version: Version, Started: started, Parts: map[string]string{
				"monkey": fmt.Sprintf("enabled=%v leashed=%v paused=%v, %d kills carried out", c.Enabled, c.Leashed, c.Paused, kills),
			}}
		},
		Endpoints: map[string]natsx.Endpoint{"schedule": s.schedule, "kill": s.kill},
	}, s.log)
}

// unit is one schedule unit of an opted-in service.
type unit struct {
	service, name, group string
	chaos                spec.Chaos
}

// units lists the schedule units: one per service, or with grouping
// "group" one per group that takes traffic.
func (s *Service) units(ctx context.Context, only string) ([]unit, error) {
	svcs, err := spec.List(ctx, s.m.Services)
	if err != nil {
		return nil, err
	}
	var out []unit
	for _, svc := range svcs {
		if !svc.Chaos.Enabled || (only != "" && svc.Name != only) {
			continue
		}
		if svc.Chaos.Grouping != "group" {
			out = append(out, unit{service: svc.Name, name: svc.Name, chaos: svc.Chaos})
			continue
		}
		rt, _, err := routes.Get(ctx, s.m.Routes, svc.Name)
		if err != nil {
			continue
		}
		for _, g := range rt.Groups() {
			if rt.Weights[g] > 0 {
				out = append(out, unit{service: svc.Name, name: svc.Name + "." + g, group: g, chaos: svc.Chaos})
			}
		}
	}
	return out, nil
}

// plan returns the unit's kills planned in [from, to].
func (s *Service) plan(cfg monkey.Config, u unit, from, to time.Time) []monkey.Kill {
	var out []monkey.Kill
	if every := u.chaos.MeanTimeBetweenKills.Every; every > 0 { // the fast mode
		for p := from.Truncate(monkey.FastPeriod); !p.After(to); p = p.Add(monkey.FastPeriod) {
			if k, ok := monkey.PlanFast(s.cfg.Seed, u.service, u.name, every, p); ok && !k.At.Before(from) && !k.At.After(to) {
				out = append(out, k)
			}
		}
		return out
	}
	for d := from.Truncate(24 * time.Hour); !d.After(to); d = d.Add(24 * time.Hour) {
		if k, ok := monkey.PlanDay(cfg, s.cfg.Seed, u.service, u.name, u.chaos.MeanTimeBetweenKills.WorkDays, d); ok && !k.At.Before(from) && !k.At.After(to) {
			out = append(out, k)
		}
	}
	return out
}

// loop carries out the kills that come due.
func (s *Service) loop(ctx context.Context, wg *sync.WaitGroup) {
	last := time.Now()
	loop.Every(ctx, s.cfg.Tick, func() {
		now := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cfg, _, err := monkey.GetConfig(cctx, s.m.Chaos)
		var us []unit
		if err == nil && cfg.Enabled {
			us, err = s.units(cctx, "")
		}
		cancel()
		if err != nil {
			s.log.Warn().Err(err).Msg("chaos: read config and specs")
			return
		}
		for _, u := range us {
			for _, k := range s.plan(cfg, u, last, now) {
				if u.chaos.MeanTimeBetweenKills.Every == 0 && !cfg.InWindow(k.At) {
					continue
				}
				key := fmt.Sprintf("%s@%d", k.Unit, k.At.UnixNano())
				s.mu.Lock()
				done := !s.fired[key].IsZero()
				s.fired[key] = now
				s.mu.Unlock()
				if done {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					actx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					o, err := s.m.Attempt(actx, u.service, u.group, "scheduled for "+k.At.Format(time.TimeOnly))
					if err != nil {
						s.log.Warn().Err(err).Str("service", u.service).Msg("chaos: attempt")
					} else if o.Result == monkey.Terminated {
						s.killed(u.service)
					}
				}()
			}
		}
		last = now
		s.mu.Lock()
		for k, at := range s.fired {
			if now.Sub(at) > time.Minute {
				delete(s.fired, k)
			}
		}
		s.mu.Unlock()
	})
}

// Planned is one line of the schedule.
type Planned struct {
	monkey.Kill
	Mode string `json:"mode"` // "work day" or "fast"
}

// schedule answers with the kills planned for today's window (or the next
// 10 s in the fast mode) of the service named in the body, or of all.
func (s *Service) schedule(body []byte) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg, _, err := monkey.GetConfig(ctx, s.m.Chaos)
	if err != nil {
		return nil, err
	}
	us, err := s.units(ctx, string(body))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := []Planned{}
	for _, u := range us {
		mode, to := "work day", now.Truncate(24*time.Hour).Add(24*time.Hour-time.Nanosecond)
		from := now.Truncate(24 * time.Hour)
		if u.chaos.MeanTimeBetweenKills.Every > 0 {
			mode, from, to = "fast", now, now.Add(10*time.Second)
		}
		for _, k := range s.plan(cfg, u, from, to) {
			out = append(out, Planned{Kill: k, Mode: mode})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}

// KillRequest is the body of the kill endpoint.
type KillRequest struct {
	Service string `json:"service"`
	Group   string `json:"group,omitempty"`
}

// kill carries out a kill on demand: every check but the schedule.
func (s *Service) kill(body []byte) (any, error) {
	var r KillRequest
	if err := json.Unmarshal(body, &r); err != nil || r.Service == "" {
		return nil, fmt.Errorf(`want {"service":"…","group":"…"}`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := s.m.Attempt(ctx, r.Service, r.Group, "on demand")
	if err == nil && o.Result == monkey.Terminated {
		s.killed(r.Service)
	}
	return o, err
}

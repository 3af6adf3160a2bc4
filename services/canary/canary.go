// Package canary is the canary service: it owns release intake (validation,
// one release per service at a time) and the canary phase with its
// statistical judge.
package canary

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/services/canary/intake"
	"github.com/redblack/redblack/services/canary/phase"
	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/topology"
)

// Version of the service.
const Version = "0.1.0"

// Config configures the canary service.
type Config struct {
	Topology topology.Options
	// ProviderEgress is the admin's allow-list of the addresses analysis
	// template providers may be read from (empty: any but link-local).
	ProviderEgress analysis.Egress
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Topology: topology.DefaultOptions()} }

// Service is the canary service.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	log     zerolog.Logger
	metrics *phase.Metrics
}

// Collectors are the canary judge's metrics.
func (s *Service) Collectors() []prometheus.Collector { return s.metrics.Collectors() }

// New builds the service on a NATS connection it does not own.
func New(cfg Config, nc *nats.Conn, log zerolog.Logger) *Service {
	return &Service{cfg: cfg, nc: nc, log: log, metrics: phase.NewMetrics()}
}

// Run ensures the topology, starts the intake and serves the micro
// endpoints until ctx ends, then drains.
func (s *Service) Run(ctx context.Context) error {
	js, err := natsx.Open(ctx, s.nc, func(ctx context.Context, js jetstream.JetStream) error {
		return topology.Prepare(ctx, js, s.cfg.Topology)
	})
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	in, err := intake.New(ctx, js, s.log, time.Now)
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	cons, err := in.Start(ctx)
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	defer cons.Stop()
	calls, err := api.New(s.nc, js, s.log.With().Str("part", "api").Logger()).Start()
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	defer calls.Unsubscribe()
	routers := &metrics.Directory{NC: s.nc}
	ph, err := phase.New(ctx, js, routers.Known, s.log)
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	ph.Metrics = s.metrics
	ph.Reader = analysis.NewReader(s.cfg.ProviderEgress)
	runs, err := ph.Start(ctx)
	if err != nil {
		return fmt.Errorf("canary: %w", err)
	}
	defer ph.Wait() // the runs stop with ctx
	defer runs.Stop()
	started := time.Now().UTC()
	return natsx.Serve(ctx, s.nc, natsx.MicroConfig{
		Name: "canary", Version: Version, Description: "release intake and canary judge",
		Status: func() any {
			return natsx.Status{Service: "canary", Version: Version, Started: started, Parts: map[string]string{
				"intake": "running", "canary_phase": "running", "api": "running",
			}}
		},
		Consumers: func() []*natsx.Consumer { return []*natsx.Consumer{cons, runs} },
	}, s.log)
}

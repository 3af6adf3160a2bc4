// Package watchdog is the watchdog service: it captures dead letters now, and will watch health during and after releases and enforce phase deadlines (release pipeline issue).
package watchdog

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/deadletter"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/topology"
)

// Version of the service.
const Version = "0.1.0"

// Config configures the watchdog service.
type Config struct {
	Topology topology.Options
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Topology: topology.DefaultOptions()} }

// Service is the watchdog service.
type Service struct {
	cfg Config
	nc  *nats.Conn
	log zerolog.Logger
}

// New builds the service on a NATS connection it does not own.
func New(cfg Config, nc *nats.Conn, log zerolog.Logger) *Service {
	return &Service{cfg: cfg, nc: nc, log: log}
}

// Run ensures the topology and serves the micro endpoints until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	js, err := natsx.Open(ctx, s.nc, func(ctx context.Context, js jetstream.JetStream) error {
		return topology.Ensure(ctx, js, s.cfg.Topology)
	})
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	dl, err := deadletter.Run(ctx, js, s.log)
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	defer dl.Stop()
	consumers := []*natsx.Consumer{dl}
	started := time.Now().UTC()
	return natsx.Serve(ctx, s.nc, natsx.MicroConfig{
		Name: "watchdog", Version: Version, Description: "health during canary, bake and after; phase deadlines; dead letters",
		Status: func() any {
			return natsx.Status{Service: "watchdog", Version: Version, Started: started, Parts: map[string]string{
				"dead_letters": "running", "health": "not implemented yet (release pipeline issue)", "deadlines": "not implemented yet (release pipeline issue)",
			}}
		},
		Consumers: func() []*natsx.Consumer { return consumers },
	}, s.log)
}

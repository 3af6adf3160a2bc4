// Package router is the router service: it will own the load balancer: routing tables, the HTTP data plane and traffic metrics. Only its registration exists so far; the traffic issue builds it.
package router

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/topology"
)

// Version of the service.
const Version = "0.1.0"

// Config configures the router service.
type Config struct {
	Topology topology.Options
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Topology: topology.DefaultOptions()} }

// Service is the router service.
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
	_, err := natsx.Open(ctx, s.nc, func(ctx context.Context, js jetstream.JetStream) error {
		return topology.Ensure(ctx, js, s.cfg.Topology)
	})
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	var consumers []*natsx.Consumer // none until its logic exists
	started := time.Now().UTC()
	return natsx.Serve(ctx, s.nc, natsx.MicroConfig{
		Name: "router", Version: Version, Description: "the load balancer: routing tables and the HTTP data plane",
		Status: func() any {
			return natsx.Status{Service: "router", Version: Version, Started: started, Parts: map[string]string{
				"data_plane": "not implemented yet (traffic issue)",
			}}
		},
		Consumers: func() []*natsx.Consumer { return consumers },
	}, s.log)
}

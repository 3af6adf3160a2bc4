package natsx

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
)

// MicroConfig describes a service's NATS micro registration.
type MicroConfig struct {
	// Name is the service name, e.g. "canary"; it registers as
	// "redblack-<name>" with endpoints under "redblack.<name>.".
	Name        string
	Version     string // semver, e.g. "0.1.0"
	Description string
	// Status answers the status endpoint.
	Status func() any
	// Consumers lists the durable consumers whose lag the stats report.
	Consumers func() []*Consumer
	// Endpoints are further query and control endpoints, by name, served on
	// redblack.<name>.<endpoint>.
	Endpoints map[string]Endpoint
	// Log receives an endpoint's recovered panic (Serve sets it).
	Log zerolog.Logger
}

// Endpoint answers one request: its body in, a JSON-able value out.
type Endpoint func(body []byte) (any, error)

// EndpointSubject is the subject of a service's endpoint.
func EndpointSubject(service, endpoint string) string { return "redblack." + service + "." + endpoint }

// StatusSubject is the subject of a service's status endpoint.
func StatusSubject(name string) string { return EndpointSubject(name, "status") }

// Stats is what the micro stats handler reports.
type Stats struct {
	Consumers []Lag  `json:"consumers"`
	Error     string `json:"error,omitempty"`
}

// AddMicro registers the service with NATS micro (`nats micro ls` lists it)
// with a status endpoint and a stats handler reporting consumer lag.
func AddMicro(nc *nats.Conn, c MicroConfig) (micro.Service, error) {
	stats := func(*micro.Endpoint) any {
		s := Stats{Consumers: []Lag{}}
		if c.Consumers == nil {
			return s
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, cons := range c.Consumers() {
			lag, err := cons.Lag(ctx)
			if err != nil {
				s.Error = err.Error()
				continue
			}
			s.Consumers = append(s.Consumers, lag)
		}
		return s
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:         "redblack-" + c.Name,
		Version:      c.Version,
		Description:  c.Description,
		StatsHandler: stats,
	})
	if err != nil {
		return nil, fmt.Errorf("natsx: micro %s: %w", c.Name, err)
	}
	status := func(r micro.Request) {
		if err := r.RespondJSON(c.Status()); err != nil {
			_ = r.Error("500", err.Error(), nil)
		}
	}
	grp := svc.AddGroup("redblack." + c.Name)
	if err := grp.AddEndpoint("status", micro.HandlerFunc(status)); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("natsx: micro %s status endpoint: %w", c.Name, err)
	}
	for name, ep := range c.Endpoints {
		h := func(r micro.Request) {
			var v any
			var err error
			if !Guard(c.Log, "endpoint "+name, func() { v, err = ep(r.Data()) }) {
				err = fmt.Errorf("internal error")
			}
			if err != nil {
				_ = r.Error("400", err.Error(), nil)
				return
			}
			if err := r.RespondJSON(v); err != nil {
				_ = r.Error("500", err.Error(), nil)
			}
		}
		if err := grp.AddEndpoint(name, micro.HandlerFunc(h)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("natsx: micro %s endpoint %s: %w", c.Name, name, err)
		}
	}
	// the server knows every endpoint before anyone is told the service runs
	if err := nc.Flush(); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("natsx: micro %s: %w", c.Name, err)
	}
	return svc, nil
}

// Status is the common shape of every service's status answer.
type Status struct {
	Service string    `json:"service"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Parts says, per part of the service, what it is doing — or that it is
	// not built yet.
	Parts map[string]string `json:"parts"`
}

// Open creates the JetStream context of a service and ensures the topology
// within 10 s, as every service does at start.
func Open(ctx context.Context, nc *nats.Conn, ensure func(context.Context, jetstream.JetStream) error) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsx: jetstream: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := ensure(ctx, js); err != nil {
		return nil, err
	}
	return js, nil
}

// Serve registers the micro service, logs that it runs, blocks until ctx
// ends and then stops the registration.
func Serve(ctx context.Context, nc *nats.Conn, c MicroConfig, log zerolog.Logger) error {
	c.Log = log
	svc, err := AddMicro(nc, c)
	if err != nil {
		return err
	}
	defer svc.Stop()
	log.Info().Msg("running")
	<-ctx.Done()
	return nil
}

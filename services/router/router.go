// Package router is the router service: the load balancer under programmer
// control. It serves HTTP through the proxy from a routing table built from
// the routes and instances buckets, applies weight changes and switches as
// compare-and-set updates of routes, announces a switch only once every live
// router has applied it, and publishes per-group traffic samples.
package router

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/router/cloudwatch"
	"github.com/redblack/redblack/services/router/proxy"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routing"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// Version of the service.
const Version = "0.2.0"

// Config configures the router.
type Config struct {
	Topology topology.Options
	// HTTP is the data plane's address (default 127.0.0.1:8080).
	HTTP string
	// HTTPS, when set, is a TLS address of the data plane, with the
	// certificate and key in the files TLSCert and TLSKey: HTTP/2 where the
	// client offers h2 by ALPN, HTTP/1.1 otherwise. (HTTP serves HTTP/1.1
	// and h2c with prior knowledge.)
	HTTPS, TLSCert, TLSKey string
	// ReusePort opens the data plane's ports with SO_REUSEPORT: several
	// routers (copies of the service) serve one address.
	ReusePort bool
	// Admin serves /metrics (Prometheus text format) and /healthz (Health);
	// "" for none.
	Admin string
	// MetricsInterval is how often samples are published (default 1 s,
	// at least 100 ms).
	MetricsInterval time.Duration
	// Proxy tunes the data plane.
	Proxy proxy.Config
	// ID names this router instance (default: random).
	ID string
	// RouterMemory is how long another router that answered is waited for
	// before a change is announced (default RouterMemory).
	RouterMemory time.Duration
	// CallerWait bounds how long a change waits for the discovery clients
	// of inner tiers once every router has applied it (default
	// CallerWait); those still behind are named in traffic.lagging.
	CallerWait time.Duration
	// Edge, when set, also moves the traffic at the cloud's load balancer
	// (the aws deployment's ALB): every weight change is applied there and
	// read back before it is announced.
	Edge Edge
	// CloudWatch, when set, publishes the groups' samples read from
	// CloudWatch (the ALB's counts) beside the router's own.
	CloudWatch *cloudwatch.Bridge
}

// Edge is a load balancer in front of the routers, weighted by group.
type Edge interface {
	Apply(ctx context.Context, service string, weights map[string]int) error
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Topology: topology.DefaultOptions(), HTTP: "127.0.0.1:8080", MetricsInterval: time.Second}
}

// Service is the router.
type Service struct {
	cfg   Config
	nc    *nats.Conn
	log   zerolog.Logger
	proxy *proxy.Fast
	reg   *routing.Registry
	grpc  grpcCounter

	js        jetstream.JetStream
	routesKV  jetstream.KeyValue
	services  jetstream.KeyValue
	instances jetstream.KeyValue
	releases  release.Store

	follower *routing.Follower

	mu        sync.Mutex
	listening map[string]*portServer // dedicated ports being served
	routers   map[string]time.Time   // routers by id, when last they answered
	callers   map[string]time.Time   // discovery clients by id, likewise

	addr    atomic.Pointer[net.Addr]
	tlsAddr atomic.Pointer[net.Addr]
	// staleSince is when NATS was lost (unix ns; 0 while connected): the
	// tables may be behind the buckets since then
	staleSince atomic.Int64
}

// New builds the service on a NATS connection it does not own.
func New(cfg Config, nc *nats.Conn, log zerolog.Logger) *Service {
	if cfg.ID == "" {
		cfg.ID = events.NewID()[:8]
	}
	if cfg.RouterMemory <= 0 {
		cfg.RouterMemory = RouterMemory
	}
	if cfg.CallerWait <= 0 {
		cfg.CallerWait = CallerWait
	}
	if cfg.MetricsInterval < 100*time.Millisecond {
		cfg.MetricsInterval = 100 * time.Millisecond
	}
	s := &Service{
		cfg: cfg, nc: nc, log: log, proxy: proxy.NewFast(cfg.Proxy), reg: routing.NewRegistry(), grpc: newGRPCCounter(),
		listening: map[string]*portServer{}, routers: map[string]time.Time{}, callers: map[string]time.Time{},
	}
	s.proxy.CountGRPC(s.grpc)
	return s
}

// Backends is the number of instances the router's registry holds (and
// /metrics reports).
func (s *Service) Backends() int { return len(s.reg.Backends()) }

// Refused returns how many client connections the data plane closed
// unread, by reason (proxy.RefusedPerClient, proxy.RefusedPressure).
func (s *Service) Refused() map[string]uint64 { return s.proxy.Refused() }

// Addr is the data plane's listening address once Run has started it.
func (s *Service) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Run serves until ctx ends, then shuts the data plane down gracefully.
func (s *Service) Run(ctx context.Context) error {
	js, err := natsx.Open(ctx, s.nc, func(ctx context.Context, js jetstream.JetStream) error {
		return topology.Prepare(ctx, js, s.cfg.Topology)
	})
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	s.js = js
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for name, kv := range map[string]*jetstream.KeyValue{topology.BucketRoutes: &s.routesKV, topology.BucketServices: &s.services, topology.BucketInstances: &s.instances} {
		if *kv, err = natsx.Bucket(bctx, js, name); err != nil {
			return fmt.Errorf("router: %w", err)
		}
	}
	if s.releases.KV, err = natsx.Bucket(bctx, js, topology.BucketReleases); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if err := s.watch(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}

	l, err := listen(s.cfg.HTTP, s.cfg.ReusePort)
	if err != nil {
		return fmt.Errorf("router: listen %s: %w", s.cfg.HTTP, err)
	}
	addr := l.Addr()
	s.addr.Store(&addr)
	go func() {
		if err := s.proxy.Serve(l); err != nil {
			s.log.Error().Err(err).Msg("data plane")
		}
	}()
	if s.cfg.HTTPS != "" {
		tl, conf, err := s.listenTLS()
		if err != nil {
			_ = l.Close()
			return fmt.Errorf("router: %w", err)
		}
		go func() {
			if err := s.proxy.ServeTLS(tl, conf); err != nil {
				s.log.Error().Err(err).Msg("data plane (TLS)")
			}
		}()
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.proxy.Shutdown(sctx) // in-flight requests finish
		s.closePorts()
	}()
	if s.cfg.Admin != "" {
		admin, err := s.serveAdmin()
		if err != nil {
			return fmt.Errorf("router: %w", err)
		}
		defer admin.Close()
	}

	sub, err := routing.AnswerApplied(s.nc, AppliedSubject, s.cfg.ID, s.proxy.Table)
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	defer sub.Unsubscribe()

	cons, err := natsx.Consume(ctx, js, natsx.ConsumerSpec{
		Stream: topology.StreamFleet, Durable: topology.DurableRouterCommands,
		FilterSubjects: []string{"fleet.*.traffic.set", "fleet.*.traffic.switch", "fleet.*.traffic.restore"},
		MaxDeliver:     5, AckWait: release.StepAckWait, // a copy that dies hands its commands over this soon
	}, s.handle, s.log)
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	defer cons.Stop()
	steps, err := s.startReleases(ctx)
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	defer steps.Stop()
	go (&routing.Publisher{JS: js, Source: s.cfg.ID, Kind: subjects.PublisherRouter, Registry: s.reg, Table: s.proxy.Table, Interval: s.cfg.MetricsInterval, Log: s.log}).Run(ctx)
	go s.trackRouters(ctx)
	go s.watchStaleness(ctx, 100*time.Millisecond)
	if s.cfg.CloudWatch != nil {
		go s.cfg.CloudWatch.Run(ctx, s.routedGroups, s.publishSample)
	}

	started := time.Now().UTC()
	return natsx.Serve(ctx, s.nc, natsx.MicroConfig{
		Name: "router", Version: Version, Description: "the load balancer: routing tables and the HTTP data plane",
		Status: func() any {
			return natsx.Status{Service: "router", Version: Version, Started: started, Parts: map[string]string{
				"data_plane": "http://" + addr.String(), "id": s.cfg.ID,
			}}
		},
		Consumers: func() []*natsx.Consumer { return []*natsx.Consumer{cons, steps} },
	}, s.log)
}

// listenTLS opens the TLS address with the certificate.
func (s *Service) listenTLS() (net.Listener, *tls.Config, error) {
	if s.cfg.TLSCert == "" || s.cfg.TLSKey == "" {
		return nil, nil, fmt.Errorf("--https %s needs --https-cert and --https-key", s.cfg.HTTPS)
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS certificate: %w", err)
	}
	l, err := listen(s.cfg.HTTPS, s.cfg.ReusePort)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", s.cfg.HTTPS, err)
	}
	s.tlsAddr.Store(new(l.Addr()))
	return l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// TLSAddr is the data plane's TLS address once Run has started it (nil
// without HTTPS).
func (s *Service) TLSAddr() net.Addr {
	if a := s.tlsAddr.Load(); a != nil {
		return *a
	}
	return nil
}

// watch follows the buckets and swaps every table built into the proxy.
// It returns once the first table is built.
func (s *Service) watch(ctx context.Context) error {
	s.follower = &routing.Follower{
		Routes: s.routesKV, Instances: s.instances, Services: s.services, Registry: s.reg,
		InstanceTTL: s.cfg.Topology.InstanceTTL, Swap: s.proxy.Swap, Rebuilt: s.reconcilePorts, Log: s.log,
	}
	return s.follower.Start(ctx)
}

// portServer is a service's dedicated port.
type portServer struct {
	port int
	srv  interface{ Shutdown() error }
}

// reconcilePorts listens on the dedicated ports the specs ask for, on the
// data plane's host, and stops those no longer asked for.
func (s *Service) reconcilePorts() {
	host := "127.0.0.1"
	if h, _, err := net.SplitHostPort(s.cfg.HTTP); err == nil && h != "" {
		host = h
	}
	ports := s.follower.Ports()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ps := range s.listening {
		if ports[name] != ps.port {
			_ = ps.srv.Shutdown()
			delete(s.listening, name)
		}
	}
	for name, port := range ports {
		if port == 0 || s.listening[name] != nil {
			continue
		}
		l, err := listen(net.JoinHostPort(host, fmt.Sprint(port)), s.cfg.ReusePort)
		if err != nil {
			s.log.Warn().Err(err).Str("service", name).Int("port", port).Msg("dedicated port")
			continue
		}
		s.listening[name] = &portServer{port: port, srv: s.proxy.ServeService(l, name)}
	}
}

// closePorts stops every dedicated port.
func (s *Service) closePorts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ps := range s.listening {
		_ = ps.srv.Shutdown()
		delete(s.listening, name)
	}
}

// Package router is the router service: the load balancer under programmer
// control. It serves HTTP through the proxy from a routing table built from
// the routes and instances buckets, applies weight changes and switches as
// compare-and-set updates of routes, announces a switch only once every live
// router has applied it, and publishes per-group traffic samples.
package router

import (
	"context"
	"errors"
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
	"github.com/redblack/redblack/services/router/routing"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// Version of the service.
const Version = "0.2.0"

// Config configures the router.
type Config struct {
	Topology topology.Options
	// HTTP is the data plane's address (default 127.0.0.1:8080).
	HTTP string
	// ReusePort opens the data plane's ports with SO_REUSEPORT: several
	// routers (copies of the service) serve one address.
	ReusePort bool
	// Admin serves /metrics (Prometheus text format); "" for none.
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

	js        jetstream.JetStream
	routesKV  jetstream.KeyValue
	services  jetstream.KeyValue
	instances jetstream.KeyValue
	releases  release.Store

	mu        sync.Mutex
	routes    map[string]routes.Route
	revisions map[string]uint64
	entries   map[string]discovery.Entry
	entryRevs map[string]uint64    // the entries' last revisions (an expiry's, while in grace)
	changedAt map[string]time.Time // when each service's route last changed
	hostnames map[string][]string
	capacity  map[string]int
	ports     map[string]int         // dedicated port by service, from specs
	listening map[string]*portServer // dedicated ports being served
	routers   map[string]time.Time   // routers by id, when last they answered

	addr atomic.Pointer[net.Addr]
}

// New builds the service on a NATS connection it does not own.
func New(cfg Config, nc *nats.Conn, log zerolog.Logger) *Service {
	if cfg.ID == "" {
		cfg.ID = events.NewID()[:8]
	}
	if cfg.RouterMemory <= 0 {
		cfg.RouterMemory = RouterMemory
	}
	if cfg.MetricsInterval < 100*time.Millisecond {
		cfg.MetricsInterval = 100 * time.Millisecond
	}
	return &Service{
		cfg: cfg, nc: nc, log: log, proxy: proxy.NewFast(cfg.Proxy), reg: routing.NewRegistry(),
		routes: map[string]routes.Route{}, revisions: map[string]uint64{}, entries: map[string]discovery.Entry{}, entryRevs: map[string]uint64{}, changedAt: map[string]time.Time{},
		hostnames: map[string][]string{}, capacity: map[string]int{}, ports: map[string]int{}, listening: map[string]*portServer{}, routers: map[string]time.Time{},
	}
}

// Backends is the number of instances the router's registry holds (and
// /metrics reports).
func (s *Service) Backends() int { return len(s.reg.Backends()) }

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

	sub, err := s.nc.Subscribe(AppliedSubject, s.answerApplied)
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
	go s.publishMetrics(ctx)
	go s.trackRouters(ctx)
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

// watch follows the three buckets and rebuilds the table on every change.
// It returns once the initial values are in and the first table is built.
func (s *Service) watch(ctx context.Context) error {
	ready := make(chan struct{}, 3)
	for _, w := range []bucketWatch{
		{s.routesKV, s.applyRoute, func() []string { return keysOf(s.routes) }},
		{s.instances, s.applyInstance, func() []string { return keysOf(s.entries) }},
		{s.services, s.applySpec, func() []string { return keysOf(s.capacity) }},
	} {
		go s.follow(ctx, w, ready)
	}
	for range 3 {
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("buckets did not answer in 10s")
		}
	}
	s.rebuild()
	return nil
}

// bucketWatch is one bucket the table is built from: apply records an
// update (under s.mu) and reports whether the table must be rebuilt; known
// lists the keys recorded (under s.mu).
type bucketWatch struct {
	kv    jetstream.KeyValue
	apply func(jetstream.KeyValueEntry) bool
	known func() []string
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// StallAfter is how long a watcher may stay behind its bucket before it is
// made again. A watcher is an ordered consumer on one node; when that node
// dies the client notices only after missed heartbeats (some 10 s), and
// meanwhile the table would miss every change: a canary's instances, a
// switch.
const StallAfter = 2 * time.Second

// follow applies one bucket's updates for as long as ctx lasts. A watcher
// that falls behind the bucket by StallAfter is made again; what its replay
// no longer lists is dropped as expired (an instance keeps its grace).
func (s *Service) follow(ctx context.Context, w bucketWatch, ready chan<- struct{}) {
	initial := true
	for ctx.Err() == nil {
		wt, err := w.kv.WatchAll(ctx)
		if err != nil {
			s.log.Warn().Err(err).Str("bucket", w.kv.Bucket()).Msg("watch; trying again")
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		var seen atomic.Uint64
		wctx, stop := context.WithCancel(ctx)
		stalled := s.stalled(wctx, w.kv, &seen)
		replay := map[string]bool{}
		replaying := true
	updates:
		for {
			select {
			case <-ctx.Done():
				break updates
			case <-stalled:
				s.log.Warn().Str("bucket", w.kv.Bucket()).Uint64("seen", seen.Load()).Msg("watcher behind its bucket (its node died?): made again")
				break updates
			case e, ok := <-wt.Updates():
				if !ok {
					break updates
				}
				if e == nil { // the replay is done
					if replaying && !initial {
						s.dropUnlisted(w, replay)
					}
					if replaying && initial {
						initial = false
						ready <- struct{}{}
					}
					replaying = false
					continue
				}
				seen.Store(e.Revision())
				if replaying {
					replay[e.Key()] = true
				}
				changed := false
				natsx.Guard(s.log, "router watch "+e.Bucket()+"/"+e.Key(), func() {
					s.mu.Lock()
					defer s.mu.Unlock()
					changed = w.apply(e)
				})
				if changed && !initial {
					natsx.Guard(s.log, "router rebuild", s.rebuild)
				}
			}
		}
		stop()
		_ = wt.Stop()
	}
}

// stalled closes the channel it returns once the bucket's last sequence
// has been ahead of what the watcher delivered for StallAfter.
func (s *Service) stalled(ctx context.Context, kv jetstream.KeyValue, seen *atomic.Uint64) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		t := time.NewTicker(StallAfter / 4)
		defer t.Stop()
		var behind time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			sctx, cancel := context.WithTimeout(ctx, StallAfter/4)
			st, err := kv.Status(sctx)
			cancel()
			if err != nil {
				continue // the bucket does not answer either: nothing to compare
			}
			b, ok := st.(*jetstream.KeyValueBucketStatus)
			if !ok || b.StreamInfo().State.LastSeq <= seen.Load() {
				behind = time.Time{}
				continue
			}
			if behind.IsZero() {
				behind = time.Now()
			} else if time.Since(behind) >= StallAfter {
				close(out)
				return
			}
		}
	}()
	return out
}

// dropUnlisted drops what a new watcher's replay did not list: changed
// while the old one was stalled. An instance gets the grace of an expiry.
func (s *Service) dropUnlisted(w bucketWatch, listed map[string]bool) {
	changed := false
	s.mu.Lock()
	for _, k := range w.known() {
		if !listed[k] {
			changed = w.apply(gone{bucket: w.kv.Bucket(), key: k}) || changed
		}
	}
	s.mu.Unlock()
	if changed {
		natsx.Guard(s.log, "router rebuild", s.rebuild)
	}
}

// gone is a key no longer in its bucket, as an update.
type gone struct{ bucket, key string }

func (g gone) Bucket() string                  { return g.bucket }
func (g gone) Key() string                     { return g.key }
func (g gone) Value() []byte                   { return nil }
func (g gone) Revision() uint64                { return 0 }
func (g gone) Created() time.Time              { return time.Now() }
func (g gone) Delta() uint64                   { return 0 }
func (g gone) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePurge }

func deleted(e jetstream.KeyValueEntry) bool {
	return e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge
}

// The apply functions record one bucket update and report whether the
// routing table must be rebuilt.

func (s *Service) applyRoute(e jetstream.KeyValueEntry) bool {
	if deleted(e) {
		delete(s.routes, e.Key())
		delete(s.revisions, e.Key())
		return true
	}
	r, err := routes.Decode(e.Value())
	if err != nil {
		return false
	}
	s.routes[e.Key()], s.revisions[e.Key()] = r, e.Revision()
	s.changedAt[e.Key()] = time.Now()
	time.AfterFunc(SettleFor, func() { natsx.Guard(s.log, "router rebuild", s.rebuild) }) // the route settled
	return true
}

// SettleFor is how long after a route change its previous group may serve
// for a new group this router has no instance of yet (its watcher of
// instances behind): longer than StallAfter and a watcher's replay.
const SettleFor = 10 * time.Second

func (s *Service) applyInstance(e jetstream.KeyValueEntry) bool {
	old, had := s.entries[e.Key()]
	if e.Operation() == jetstream.KeyValuePurge && had {
		// the entry aged out (the bucket's TTL), which is no proof the
		// instance is gone: after an outage of the whole cluster every
		// entry expires at once, before the provisioner's next heartbeat.
		// It stays routable for one more TTL (a dead one fails its
		// connections, which are retried elsewhere and eject it); the
		// provisioner's explicit delete removes at once.
		s.expiring(e.Key(), e.Revision())
		return false
	}
	if deleted(e) {
		delete(s.entries, e.Key())
		delete(s.entryRevs, e.Key())
		return had
	}
	d, err := discovery.Decode(e.Value())
	if err != nil {
		return false
	}
	s.entries[e.Key()] = d
	s.entryRevs[e.Key()] = e.Revision()
	// the provisioner's heartbeat re-puts unchanged entries every few
	// seconds: only a change of what routing reads rebuilds the table
	return !had || old.State != d.State || old.Address != d.Address || old.Group != d.Group || old.Service != d.Service
}

// expiring drops an aged-out entry after a grace of one TTL, unless it
// was put again meanwhile. Called with s.mu held.
func (s *Service) expiring(key string, rev uint64) {
	grace := s.cfg.Topology.InstanceTTL
	if grace <= 0 {
		grace = topology.DefaultOptions().InstanceTTL
	}
	s.entryRevs[key] = rev
	s.log.Warn().Str("instance", key).Dur("grace", grace).Msg("discovery entry expired: still routed for a grace period")
	time.AfterFunc(grace, func() {
		s.mu.Lock()
		drop := s.entryRevs[key] == rev
		if drop {
			delete(s.entries, key)
			delete(s.entryRevs, key)
		}
		s.mu.Unlock()
		if drop {
			natsx.Guard(s.log, "router rebuild", s.rebuild)
		}
	})
}

func (s *Service) applySpec(e jetstream.KeyValueEntry) bool {
	if deleted(e) {
		delete(s.hostnames, e.Key())
		delete(s.capacity, e.Key())
		delete(s.ports, e.Key())
		return true
	}
	sp, err := spec.Decode(e.Value())
	if err != nil {
		return false
	}
	s.hostnames[e.Key()], s.capacity[e.Key()], s.ports[e.Key()] = sp.Hostnames, sp.Capacity, sp.Port
	return true
}

// rebuild builds a table from the current state and swaps it in.
func (s *Service) rebuild() {
	s.mu.Lock()
	settling := map[string]bool{}
	for name, at := range s.changedAt {
		if time.Since(at) < SettleFor {
			settling[name] = true
		}
	}
	t := s.reg.Build(routing.Input{Routes: s.routes, Revisions: s.revisions, Instances: s.entries, Hostnames: s.hostnames, Settling: settling})
	s.proxy.Swap(t)
	s.mu.Unlock()
	s.reconcilePorts()
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
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ps := range s.listening {
		if s.ports[name] != ps.port {
			_ = ps.srv.Shutdown()
			delete(s.listening, name)
		}
	}
	for name, port := range s.ports {
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

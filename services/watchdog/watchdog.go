// Package watchdog is the watchdog service: it bakes every release that has
// switched (the new group's live metrics against the bake rules and the old
// group's figures from before the switch), keeps watching a completed
// release while the group it replaced is kept, enforces every phase's
// deadline, and captures dead letters. Each problem becomes a
// rollback.requested with the figures as the reason.
package watchdog

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/deadletter"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/topology"
)

// Version of the service.
const Version = "0.2.0"

// Source is the CloudEvents source of the watchdog's events.
const Source = "redblack/watchdog"

// Config configures the watchdog service.
type Config struct {
	Topology topology.Options
	// Window is the length of the bake rules' windows (default 10 s): a
	// degradation that starts late is judged within its window, not
	// diluted by all the healthy traffic before it.
	Window time.Duration
	// Checkpoint is how often a watch keeps its state in the release
	// record (default 5 s).
	Checkpoint time.Duration
	// Warmup: the latency rule ignores samples that start within it of
	// the switch, when the new group's connections are being opened
	// (default 3 s). The error rule applies from the first request.
	Warmup time.Duration
	// MinRequests of each group (and of a window) before a latency rule
	// applies (default 100).
	MinRequests uint64
	// LatencySlack: a p99 increase below it never fails a bake (default
	// 5 ms).
	LatencySlack time.Duration
	// DeadlineCheck is how often deadlines are checked (default 250 ms).
	DeadlineCheck time.Duration
	// StuckEvery is how often a rollback past its deadline raises stuck,
	// and the first step of its re-drive backoff (default 1 min).
	StuckEvery time.Duration
	// ProviderEgress is the admin's allow-list of the addresses analysis
	// template providers may be read from during a bake (empty: any but
	// link-local).
	ProviderEgress analysis.Egress
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Topology: topology.DefaultOptions(), Window: 10 * time.Second, Checkpoint: 5 * time.Second, Warmup: 3 * time.Second, MinRequests: 100, LatencySlack: 5 * time.Millisecond, DeadlineCheck: 250 * time.Millisecond, StuckEvery: time.Minute}
}

// Service is the watchdog service.
type Service struct {
	cfg Config
	nc  *nats.Conn
	log zerolog.Logger

	js        jetstream.JetStream
	services  jetstream.KeyValue
	instances jetstream.KeyValue
	routes    jetstream.KeyValue
	analysis  jetstream.KeyValue
	releases  release.Store
	// reader reads the analysis templates' metrics during a bake.
	reader analysis.Reader
	bakes  release.Runs

	mu       sync.Mutex
	inflight map[string]release.Record
	// known reports whether a sample publisher's id is one of the mesh's.
	known func(publisher, id string) bool
	prom  *promMetrics
}

// Collectors are the watchdog's metrics: the releases' outcomes and phase
// times, and the bake's rollback detection time.
func (s *Service) Collectors() []prometheus.Collector { return s.prom.collectors() }

// New builds the service on a NATS connection it does not own.
func New(cfg Config, nc *nats.Conn, log zerolog.Logger) *Service {
	d := DefaultConfig()
	if cfg.Window <= 0 {
		cfg.Window = d.Window
	}
	if cfg.Checkpoint <= 0 {
		cfg.Checkpoint = d.Checkpoint
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = d.Warmup
	}
	if cfg.MinRequests == 0 {
		cfg.MinRequests = d.MinRequests
	}
	if cfg.LatencySlack <= 0 {
		cfg.LatencySlack = d.LatencySlack
	}
	if cfg.DeadlineCheck <= 0 {
		cfg.DeadlineCheck = d.DeadlineCheck
	}
	if cfg.StuckEvery <= 0 {
		cfg.StuckEvery = d.StuckEvery
	}
	routers := &metrics.Directory{NC: nc}
	s := &Service{cfg: cfg, nc: nc, log: log, inflight: map[string]release.Record{}, bakes: release.Runs{Log: log}, known: routers.Known,
		reader: analysis.NewReader(cfg.ProviderEgress)}
	s.prom = newPromMetrics(func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.inflight))
	})
	return s
}

// Run starts the bake consumer, the release watch, the deadline checks and
// the dead-letter worker, and serves the micro endpoints until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	js, err := natsx.Open(ctx, s.nc, func(ctx context.Context, js jetstream.JetStream) error {
		return topology.Prepare(ctx, js, s.cfg.Topology)
	})
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	s.js = js
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for name, kv := range map[string]*jetstream.KeyValue{topology.BucketServices: &s.services, topology.BucketInstances: &s.instances, topology.BucketRoutes: &s.routes,
		topology.BucketReleases: &s.releases.KV, topology.BucketAnalysis: &s.analysis} {
		if *kv, err = natsx.Bucket(bctx, js, name); err != nil {
			return fmt.Errorf("watchdog: %w", err)
		}
	}
	// copies of the watchdog each follow every release; the lease keeps
	// each health watch to one of them
	s.bakes.Lease = &release.Lease{KV: s.releases.KV, Role: topology.DurableWatchdogBake, Owner: release.NewOwner("watchdog")}
	dl, err := deadletter.Run(ctx, js, s.log)
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	defer dl.Stop()
	bake, err := natsx.Consume(ctx, js, natsx.ConsumerSpec{
		Stream: topology.StreamReleases, Durable: topology.DurableWatchdogBake, FilterSubjects: []string{events.TrafficSwitched.Subject("*")},
		MaxDeliver: 20, AckWait: release.StepAckWait,
	}, s.switched, s.log)
	if err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	defer bake.Stop()
	wctx, stop := context.WithCancel(ctx)
	defer s.bakes.Wait()
	defer stop()
	if err := s.followReleases(wctx); err != nil {
		return fmt.Errorf("watchdog: %w", err)
	}
	go s.enforceDeadlines(wctx)

	consumers := []*natsx.Consumer{dl, bake}
	started := time.Now().UTC()
	return natsx.Serve(ctx, s.nc, natsx.MicroConfig{
		Name: "watchdog", Version: Version, Description: "health during bake and after; phase deadlines; dead letters",
		Status: func() any {
			s.mu.Lock()
			n := len(s.inflight)
			s.mu.Unlock()
			return natsx.Status{Service: "watchdog", Version: Version, Started: started, Parts: map[string]string{
				"dead_letters": "running", "bake": fmt.Sprintf("running (%d health watches)", s.bakes.Count()),
				"deadlines": fmt.Sprintf("running (%d releases in flight)", n),
			}}
		},
		Consumers: func() []*natsx.Consumer { return consumers },
	}, s.log)
}

// Package provisioner is the provisioner service: it owns server groups and
// instances through a fleet.Provider (local processes by default), acts on
// fleet.<service>.servergroup.create|resize|destroy and
// fleet.<service>.instance.terminate commands, reports every change on the
// FLEET stream and keeps the instances bucket (discovery) current.
package provisioner

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/hosts"
	"github.com/redblack/redblack/services/provisioner/local"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// Version of the service.
const Version = "0.2.0"

// Config configures the provisioner.
type Config struct {
	Topology topology.Options
	// DataDir holds the local provider's records and instance logs
	// (<DataDir>/local).
	DataDir string
	// Local tunes the local provider (its Dir is set from DataDir).
	Local local.Config
	// StartupTimeout: a new group whose instances are not all up by then
	// fails and is destroyed (default 60 s).
	StartupTimeout time.Duration
	// MaxCapacity is the global cap on a group's capacity (default 500).
	MaxCapacity int
	// StopInstancesOnExit stops every instance when the service stops;
	// otherwise they keep running and the next start re-adopts them.
	StopInstancesOnExit bool
	// StepTimeout bounds one command or release step (default 2 min: a
	// destroy on AWS waits for its target groups to drain).
	StepTimeout time.Duration
	// Provider replaces the local provider (the aws provider, say). Its
	// changes are observed by polling: it reports none itself.
	Provider fleet.Provider
	// Host names this host among local provisioners on several hosts
	// (default: the machine's hostname). Each owns its host's instances
	// and serves them to the others (package hosts).
	Host string
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Topology: topology.DefaultOptions(), DataDir: ".redblack",
		StartupTimeout: 60 * time.Second, MaxCapacity: spec.GlobalMaxCapacity, StepTimeout: 2 * time.Minute,
	}
}

// Service is the provisioner.
type Service struct {
	cfg Config
	nc  *nats.Conn
	log zerolog.Logger

	js        jetstream.JetStream
	services  jetstream.KeyValue
	instances jetstream.KeyValue
	routes    jetstream.KeyValue
	releases  release.Store
	provider  fleet.Provider // every group: the aws provider, or the local ones of every host
	own       fleet.Provider // the groups this copy observes: the aws provider, or this host's
	changes   chan fleet.Change

	mu       sync.Mutex
	pending  map[string]*pendingGroup // the groups this copy tracks, while it tracks the fleet
	tracking atomic.Bool              // this copy tracks the pending groups
	retries  sync.WaitGroup           // publishes being retried (they end with Run's context)
	rolls    release.Runs             // the runs of rolling releases (rolling.go)
	runCtx   context.Context          // Run's

	fleetEvents *prometheus.CounterVec
	listed      atomic.Pointer[fleet.Provider] // the provider, for scrapes, once Run has one
}

// pendingGroup is a group created or grown and not yet all up. It is
// kept in the releases bucket (release.PendingKey), so the copy that tracks the
// fleet tracks it whichever copy created it, and a copy that takes over
// from a dead one picks it up.
type pendingGroup struct {
	Service  string    `json:"service"`
	Group    string    `json:"group"`
	Deadline time.Time `json:"deadline"`
	Desired  int       `json:"desired"`
	Created  bool      `json:"created,omitempty"` // a new group: destroyed if it fails
	Cause    string    `json:"cause"`
	Release  string    `json:"release,omitempty"` // the release it belongs to, if any

	lastWhy string          // the last change's reason, for a failure's
	up      map[string]bool // instances reported up here: a hint, discovery decides
	adopted time.Time       // when this copy began tracking it
	rev     uint64          // the revision of its entry
}

// New builds the service on a NATS connection it does not own.
func New(cfg Config, nc *nats.Conn, log zerolog.Logger) *Service {
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = 2 * time.Minute
	}
	return &Service{cfg: cfg, nc: nc, log: log, pending: map[string]*pendingGroup{}, fleetEvents: newFleetEvents()}
}

// Run starts the provider (re-adopting instances), the command consumer,
// the change reporter and the discovery heartbeat, and serves the micro
// endpoints until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	js, err := natsx.Open(ctx, s.nc, func(ctx context.Context, js jetstream.JetStream) error {
		return topology.Prepare(ctx, js, s.cfg.Topology)
	})
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	s.js, s.runCtx = js, ctx
	defer s.retries.Wait() // last: the retries end with ctx
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.services, err = natsx.Bucket(bctx, js, topology.BucketServices); err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	if s.instances, err = natsx.Bucket(bctx, js, topology.BucketInstances); err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	if s.routes, err = natsx.Bucket(bctx, js, topology.BucketRoutes); err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	if s.releases.KV, err = natsx.Bucket(bctx, js, topology.BucketReleases); err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}

	s.changes = make(chan fleet.Change, 4096)
	reporterDone := make(chan struct{})
	if s.cfg.Provider != nil {
		// a fleet every copy sees (aws): one copy at a time observes it
		s.provider, s.own = s.cfg.Provider, s.cfg.Provider
		s.listed.Store(&s.own)
		octx, stopObserving := context.WithCancel(ctx)
		observed := make(chan struct{})
		go func() { defer close(observed); s.observe(octx) }()
		go func() { defer close(reporterDone); s.report(ctx) }()
		defer func() { stopObserving(); <-observed; <-reporterDone }()
	} else {
		// this host's own fleet: this provisioner observes it, always
		host := s.cfg.Host
		if host == "" {
			host = hosts.DefaultHost()
		}
		if err := hosts.ValidateName(host); err != nil {
			return fmt.Errorf("provisioner: %w", err)
		}
		lc := s.cfg.Local
		lc.Dir = filepath.Join(s.cfg.DataDir, "local")
		prov, err := local.Open(lc, func(c fleet.Change) { s.changes <- c })
		if err != nil {
			return fmt.Errorf("provisioner: %w", err)
		}
		s.own = prov
		s.provider = &hosts.Provider{NC: s.nc, KV: s.releases.KV, Self: host, Local: prov}
		s.listed.Store(&s.own)
		go func() { defer close(reporterDone); s.report(ctx) }()
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := hosts.Serve(ctx, s.nc, s.releases.KV, host, prov, s.log); err != nil {
				s.log.Error().Err(err).Msg("serve this host to the other provisioners")
			}
		}()
		defer func() {
			<-served
			prov.Close(s.cfg.StopInstancesOnExit)
			<-reporterDone
		}()
		go s.lead(ctx, TrackerRole, func(ctx context.Context) error {
			s.tracking.Store(true)
			s.trackPending(ctx)
			return nil
		})
		go s.heartbeat(ctx)
		go s.autoscale(ctx)
	}

	cons, err := natsx.Consume(ctx, js, natsx.ConsumerSpec{
		Stream: topology.StreamFleet, Durable: topology.DurableProvisionerCommands,
		FilterSubjects: []string{"fleet.*.servergroup.create", "fleet.*.servergroup.resize", "fleet.*.servergroup.destroy", "fleet.*.instance.terminate"},
		MaxDeliver:     5, AckWait: release.StepAckWait, // a copy that dies hands its commands over this soon
	}, s.handle, s.log)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	defer cons.Stop()
	steps, err := s.startReleases(ctx)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	defer steps.Stop()
	defer s.rolls.Wait() // after Serve: the runs end with ctx
	if err := s.startRolling(ctx); err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}

	started := time.Now().UTC()
	return natsx.Serve(ctx, s.nc, natsx.MicroConfig{
		Name: "provisioner", Version: Version, Description: "server groups and instances through a provider",
		Status: func() any {
			return natsx.Status{Service: "provisioner", Version: Version, Started: started, Parts: map[string]string{
				"provider": s.providerName(), "commands": "running", "discovery": "running",
				"release_steps": "running",
			}}
		},
		Consumers: func() []*natsx.Consumer { return []*natsx.Consumer{cons, steps} },
		Endpoints: map[string]natsx.Endpoint{"list": s.list},
	}, s.log)
}

// list answers the list endpoint: every group (of the service named in the
// request body, or all) with its instances.
func (s *Service) list(body []byte) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.provider.ListGroups(ctx, string(body))
}

func (s *Service) providerName() string {
	if s.cfg.Provider != nil {
		return fmt.Sprintf("%T", s.cfg.Provider)
	}
	return "local"
}

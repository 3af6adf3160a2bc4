// Package mesh runs redblack on one machine: an embedded NATS server with
// JetStream and the five services in this process, each on its own NATS
// connection exactly as if it were a separate process.
package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/redblack/redblack/deploy/supervise"
	"github.com/redblack/redblack/services/canary"
	"github.com/redblack/redblack/services/chaos"
	"github.com/redblack/redblack/services/provisioner"
	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/services/watchdog"
	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/discovery/lb"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/prom"
	"github.com/redblack/redblack/shared/topology"
)

// Config configures the mesh.
type Config struct {
	// DataDir holds JetStream's files (and, later, instance logs).
	DataDir string
	// NATSListen is the embedded server's client address (127.0.0.1:4222;
	// port 0 picks one).
	NATSListen string
	// Topology options for streams and buckets.
	Topology topology.Options
	// Log receives every service's log lines.
	Log zerolog.Logger
	// KeepInstances leaves instances running when the mesh stops, for the
	// next start to re-adopt; by default they are stopped.
	KeepInstances bool
	// Router tunes the router (its Topology is set from the mesh's); its
	// HTTP address is the data plane's.
	Router router.Config
	// Provisioner tunes the provisioner (DataDir and Topology are set from
	// the mesh's).
	Provisioner provisioner.Config
	// Watchdog tunes the bake and deadline checks.
	Watchdog watchdog.Config
	// ProviderEgress is the allow-list of the addresses the analysis
	// templates' providers may be read from, by the canary and the
	// watchdog (empty: any but link-local).
	ProviderEgress analysis.Egress
	// TLSCert and TLSKey make the NATS listener TLS only; they are required
	// when NATSListen is not a loopback address.
	TLSCert, TLSKey string
	// Admin serves every service's Prometheus metrics on /metrics ("" for
	// none; port 0 picks one).
	Admin string
	// UI serves the dashboard ("" for none; port 0 picks one).
	UI string
	// Spans, when set, receives each release as an OpenTelemetry trace.
	Spans sdktrace.SpanExporter
	// DataPlane, when set, runs the router as its own process that
	// outlives this one (see DataPlane); Router.HTTP is its address. Unset,
	// the router runs in this process.
	DataPlane *DataPlane
}

// DefaultConfig returns the defaults of `redblack up`.
func DefaultConfig() Config {
	cfg := Config{DataDir: ".redblack", NATSListen: "127.0.0.1:4222", Topology: topology.DefaultOptions(), Log: zerolog.Nop(), Provisioner: provisioner.DefaultConfig(), Router: router.DefaultConfig(), Watchdog: watchdog.DefaultConfig()}
	// samples every 250 ms: a bad release is seen within a quarter second
	cfg.Router.MetricsInterval = 250 * time.Millisecond
	return cfg
}

// ServiceNames are the five services, in start order.
var ServiceNames = []string{"canary", "provisioner", "router", "watchdog", "chaos"}

// runner is what the mesh needs of a service.
type runner interface {
	Run(ctx context.Context) error
}

// Mesh is a running mesh.
type Mesh struct {
	srv        *natsx.Embedded
	auth       *auth.Authority
	admin      []byte // the admin user's creds
	log        zerolog.Logger
	vmu        sync.Mutex
	violations []string
	conns      []*nats.Conn
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	mu         sync.Mutex
	errs       []error
	failed     chan struct{} // closed when the first service stops on its own
	once       sync.Once
	router     *router.Service
	exporters  []prom.Exporter
	observers  *Observers
	dataDir    string
	// sup supervises the data plane's process (nil: the router runs here);
	// http is its address, dataPlaneAdmin its admin port's
	sup            *supervise.Supervisor
	http           string
	dataPlaneAdmin string
	keep           bool // KeepInstances: the data plane is left running too
	// stopOnce makes Stop idempotent.
	stopOnce sync.Once
}

// Start starts the server, ensures the topology, starts the services and
// waits until each answers a NATS micro ping.
func Start(ctx context.Context, cfg Config) (*Mesh, error) {
	store, err := filepath.Abs(filepath.Join(cfg.DataDir, "jetstream"))
	if err != nil {
		return nil, fmt.Errorf("mesh: data dir: %w", err)
	}
	if err := CheckListen(cfg.NATSListen, cfg.TLSCert != "" && cfg.TLSKey != ""); err != nil {
		return nil, err
	}
	authority, err := auth.Open(filepath.Join(cfg.DataDir, "creds"))
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	admin, err := authority.Admin("admin")
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	if _, err := authority.WriteCreds("admin", admin); err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	srv, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: store, Listen: cfg.NATSListen,
		Auth: authority.ServerOptions, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey})
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	authority.Attach(srv.Server())
	m := &Mesh{srv: srv, auth: authority, admin: admin, log: cfg.Log, failed: make(chan struct{}), dataDir: cfg.DataDir, keep: cfg.KeepInstances}
	if err := m.start(ctx, cfg); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

func (m *Mesh) start(ctx context.Context, cfg Config) error {
	nc, err := m.connect("redblack-up", m.admin)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := topology.Reconcile(ectx, js, cfg.Topology)
	if err != nil {
		return fmt.Errorf("mesh: %w", err)
	}
	for _, r := range rows {
		if r.Action != topology.ActionOk {
			m.log.Info().Str("kind", r.Kind).Str("name", r.Name).Str("field", r.Field).Str("exists", r.Has).Str("wanted", r.Wants).Msg("topology: " + r.Action)
		}
	}
	runCtx, stop := context.WithCancel(context.Background())
	m.cancel = stop
	for _, name := range ServiceNames {
		creds, err := m.auth.Service(name)
		if err != nil {
			return fmt.Errorf("mesh: %w", err)
		}
		// the same creds, for running the service as its own process
		path, err := m.auth.WriteCreds(name, creds)
		if err != nil {
			return fmt.Errorf("mesh: %w", err)
		}
		if name == "router" && cfg.DataPlane != nil {
			if err := m.startDataPlane(cfg, path); err != nil {
				return err
			}
			continue
		}
		snc, err := m.connect("redblack-"+name, creds)
		if err != nil {
			return err
		}
		log := cfg.Log.With().Str("component", name).Logger()
		var svc runner
		switch name {
		case "canary":
			c := canary.DefaultConfig()
			c.Topology, c.ProviderEgress = cfg.Topology, cfg.ProviderEgress
			svc = canary.New(c, snc, log)
		case "provisioner":
			c := cfg.Provisioner
			c.Topology, c.DataDir, c.StopInstancesOnExit = cfg.Topology, cfg.DataDir, !cfg.KeepInstances
			svc = provisioner.New(c, snc, log)
		case "router":
			c := cfg.Router
			c.Topology = cfg.Topology
			m.router = router.New(c, snc, log)
			svc = m.router
		case "watchdog":
			c := cfg.Watchdog
			c.Topology, c.ProviderEgress = cfg.Topology, cfg.ProviderEgress
			svc = watchdog.New(c, snc, log)
		case "chaos":
			c := chaos.DefaultConfig()
			c.Topology = cfg.Topology
			svc = chaos.New(c, snc, log)
		}
		if e, ok := svc.(prom.Exporter); ok {
			m.exporters = append(m.exporters, e)
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if err := svc.Run(runCtx); err != nil {
				m.mu.Lock()
				m.errs = append(m.errs, fmt.Errorf("%s: %w", name, err))
				m.mu.Unlock()
			}
			if runCtx.Err() == nil { // stopped before being asked to
				m.once.Do(func() { close(m.failed) })
			}
		}()
	}
	if err := ServeTeams(runCtx, nc, m.auth, m.log, nil); err != nil {
		return err
	}
	if err := m.awaitServices(ctx, nc); err != nil {
		return err
	}
	return m.observe(runCtx, cfg, nc, js)
}

// observe starts what watches the mesh from outside the services: the
// admin port with every service's metrics, the dashboard and the release
// traces.
func (m *Mesh) observe(ctx context.Context, cfg Config, nc *nats.Conn, _ jetstream.JetStream) error {
	var g prometheus.Gatherer
	if cfg.Admin != "" {
		reg, err := prom.NewRegistry(m.exporters...)
		if err != nil {
			return fmt.Errorf("mesh: %w", err)
		}
		g = reg
	}
	var err error
	m.observers, err = Observe(ctx, ObserveConfig{Admin: cfg.Admin, Gatherer: g, UI: cfg.UI, Spans: cfg.Spans, NC: nc, Log: cfg.Log,
		Dial: func(creds []byte) (*nats.Conn, error) { return m.srv.Connect("redblack-dashboard-viewer", creds) }})
	return err
}

// AdminAddr is the admin port's address (nil without one).
func (m *Mesh) AdminAddr() net.Addr { return m.observers.AdminAddr() }

// UIAddr is the dashboard's address (nil without one).
func (m *Mesh) UIAddr() net.Addr { return m.observers.UIAddr() }

// FlushTraces exports the release traces ended so far.
func (m *Mesh) FlushTraces(ctx context.Context) error { return m.observers.FlushTraces(ctx) }

// awaitServices pings each service's micro registration until all answer,
// or one has failed, or 15 s pass.
func (m *Mesh) awaitServices(ctx context.Context, nc *nats.Conn) error {
	deadline := time.Now().Add(15 * time.Second)
	for _, name := range ServiceNames {
		for {
			if err := m.Err(); err != nil {
				return fmt.Errorf("mesh: %w", err)
			}
			if _, err := nc.Request("$SRV.PING.redblack-"+name, nil, 200*time.Millisecond); err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("mesh: service %s did not come up", name)
			}
		}
	}
	return nil
}

func (m *Mesh) connect(name string, creds []byte) (*nats.Conn, error) {
	nc, err := m.srv.Connect(name, creds, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		m.violation(name, err)
	}))
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	m.conns = append(m.conns, nc)
	return nc, nil
}

// violation records a permission the server refused one of the mesh's own
// connections: a service asking for a subject outside its permission set
// is a bug in the set or in the service, never silent.
func (m *Mesh) violation(name string, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(err.Error(), "Permissions Violation") {
		m.log.Warn().Str("connection", name).Err(err).Msg("nats error")
		return
	}
	m.log.Error().Str("connection", name).Err(err).Msg("permission violation")
	m.vmu.Lock()
	m.violations = append(m.violations, name+": "+err.Error())
	m.vmu.Unlock()
}

// Violations are the permission violations of the mesh's own connections
// (the services, up, and Connect's), in order.
func (m *Mesh) Violations() []string {
	m.vmu.Lock()
	defer m.vmu.Unlock()
	return append([]string(nil), m.violations...)
}

// Authority is the mesh's key holder: it issues team, auditor and service
// users.
func (m *Mesh) Authority() *auth.Authority { return m.auth }

// AdminCreds is the path of the admin user's creds file.
func (m *Mesh) AdminCreds() string { return filepath.Join(m.auth.Dir(), "admin.creds") }

// ConnectCreds opens another in-process connection as the user of creds
// (closed by Stop). Its permission violations are not the mesh's.
func (m *Mesh) ConnectCreds(name string, creds []byte, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := m.srv.Connect(name, creds, opts...)
	if err != nil {
		return nil, fmt.Errorf("mesh: %w", err)
	}
	m.conns = append(m.conns, nc)
	return nc, nil
}

// Tier prepares the instances of service to call the downstream services
// through the discovery client (shared/discovery/lb): it issues their NATS
// user (auth.Authority.Caller: the routes and instances buckets, and the
// samples of the downstream services only), keeps its creds as the
// service's secret lb.SecretName, and returns what the spec's artifact
// needs for them: env (REDBLACK_SERVER) and env_secrets (lb.CredsEnv).
func (m *Mesh) Tier(service string, downstream []string) (env, envSecrets map[string]string, err error) {
	creds, err := m.auth.Caller(service, downstream)
	if err != nil {
		return nil, nil, fmt.Errorf("mesh: %w", err)
	}
	dir := filepath.Join(m.dataDir, "secrets", service)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("mesh: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, lb.SecretName), creds, 0o600); err != nil {
		return nil, nil, fmt.Errorf("mesh: %w", err)
	}
	return map[string]string{"REDBLACK_SERVER": m.URL()}, map[string]string{lb.CredsEnv: lb.SecretName}, nil
}

// CheckListen refuses a NATS listener off loopback without TLS: the creds
// would cross the network in the clear.
func CheckListen(listen string, tls bool) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("mesh: --nats %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" || tls {
		return nil
	}
	return fmt.Errorf("mesh: --nats %s is not a loopback address: refusing to serve NATS without TLS (give --tls-cert and --tls-key)", listen)
}

// Router is the mesh's router service.
func (m *Mesh) Router() *router.Service { return m.router }

// HTTP is the address of the router's data plane.
func (m *Mesh) HTTP() string {
	if m.sup != nil {
		return m.http
	}
	return m.router.Addr().String()
}

// URL is the nats:// URL of the embedded server's loopback listener.
func (m *Mesh) URL() string { return m.srv.ClientURL() }

// Connect opens another in-process connection as the admin (closed by Stop).
func (m *Mesh) Connect(name string) (*nats.Conn, error) { return m.connect(name, m.admin) }

// Failed is closed when a service stops before Stop was called.
func (m *Mesh) Failed() <-chan struct{} { return m.failed }

// Err returns the errors of services that stopped on their own.
func (m *Mesh) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return errors.Join(m.errs...)
}

// Stop shuts down in order: services (their consumers drain), then the
// connections drain, then the server stops. Calling it again does nothing.
func (m *Mesh) Stop() error {
	m.stopOnce.Do(m.stop)
	return m.Err()
}

func (m *Mesh) stop() {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	m.stopDataPlane(m.keep)
	m.observers.Close()
	closed := make([]chan struct{}, 0, len(m.conns))
	for _, nc := range m.conns {
		ch := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(ch) })
		if err := nc.Drain(); err != nil {
			nc.Close()
			continue
		}
		closed = append(closed, ch)
	}
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
wait:
	for _, ch := range closed {
		select {
		case <-ch:
		case <-deadline.C:
			break wait
		}
	}
	m.srv.Shutdown()
}

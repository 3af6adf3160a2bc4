package cli

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"

	"github.com/redblack/redblack/dashboard"
	"github.com/redblack/redblack/deploy/cluster"
	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/services/router/proxy"
	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/prom"
)

func (a *app) upCmd() *cobra.Command {
	cfg := mesh.DefaultConfig()
	var awsf awsFlags
	var otlp string
	var nodes, copies, hostsN int
	dataPlane := mesh.DataPlane{Admin: "127.0.0.1:9181"}
	var inProcessRouter, background bool
	stopTimeout := DefaultStopTimeout
	cfg.DataDir = dataDir()
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run NATS (embedded, with JetStream) and the five services on this machine",
		Long: `Runs an embedded NATS server with JetStream (files in --data) and the canary,
provisioner, router, watchdog and chaos services in this process, each on its own
NATS connection, as its own least-privilege user. Authentication is on:
operator mode with JWTs and nkeys under <data>/creds (0600); the admin creds
(<data>/creds/admin.creds, named on the ready line) are what the CLI uses by
default, and anonymous connections are refused. Prints one line starting
"redblack ready" when every service answers. SIGINT or SIGTERM shuts down gracefully; restarting with the same --data
keeps every event and key-value entry, and brings every server group back.
Instances are stopped on exit unless --keep-instances; if up is killed, the
next up re-adopts the instances still running (or kills those it cannot).

The router's data plane runs as its own process (this binary's "run router",
its log in <data>/logs/router.log, /metrics and /healthz on --router-admin),
supervised by up: if up is killed it serves on from its last routing tables,
and the next up with the same --data, --nats and --http adopts it. It stops
with up, unless --keep-instances. --in-process-router runs it in up instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if background {
				if pid, held, err := dataHolder(cfg.DataDir); err != nil {
					return err
				} else if held {
					return dataInUse(cfg.DataDir, fmt.Sprintf("redblack up (pid %d)", pid))
				}
				return a.upBackground(cfg.DataDir, a.args, 2*time.Minute)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			start := time.Now()
			cfg.Log = logging.New(a.err, "", a.logLevel)
			if err := awsf.apply(ctx, &cfg); err != nil {
				return err
			}
			if otlp != "" {
				exp, err := otlpExporter(ctx, otlp)
				if err != nil {
					return err
				}
				cfg.Spans = exp
			}
			if copies != 1 && nodes == 0 {
				return fmt.Errorf("--copies %d: needs --nodes (the one-process up runs each service once)", copies)
			}
			if copies < 1 || copies > 5 {
				return fmt.Errorf("--copies %d: want 1..5", copies)
			}
			if hostsN != 1 && (nodes == 0 || hostsN < 1 || hostsN > 5 || awsf.provider.Provider == "aws") {
				return fmt.Errorf("--hosts %d: want 1..5, with --nodes and the local provider", hostsN)
			}
			unlock, err := lockData(cfg.DataDir)
			if err != nil {
				return err
			}
			defer unlock()
			httpsArgs, err := routerTLS(&cfg.Router)
			if err != nil {
				return err
			}
			if nodes > 0 {
				provArgs, routerArgs := awsf.args()
				if cfg.Provisioner.Local.Sandbox.Off {
					provArgs = append(provArgs, "--no-sandbox")
				}
				routerArgs = append(routerArgs, httpsArgs...)
				return a.upCluster(ctx, stopTimeout, cfg, cluster.Config{Nodes: nodes, Copies: copies, Hosts: hostsN, SharedFleet: awsf.provider.Provider == "aws",
					Admin: cfg.Admin, UI: cfg.UI, Spans: cfg.Spans,
					ProvisionerArgs: provArgs, RouterArgs: routerArgs, WatchdogArgs: append([]string{"--latency-slack", cfg.Watchdog.LatencySlack.String()}, egressArgs(cfg.ProviderEgress)...),
					CanaryArgs: egressArgs(cfg.ProviderEgress)}, start)
			}
			if !inProcessRouter {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				dataPlane.Exe, dataPlane.LogLevel = self, a.logLevel
				_, dataPlane.Args = awsf.args()
				dataPlane.Args = append(dataPlane.Args, httpsArgs...)
				if !cmd.Flags().Changed("router-admin") && cfg.Admin == "" {
					dataPlane.Admin = "" // no admin port asked for: none for the router either
				}
				cfg.DataPlane = &dataPlane
			}
			m, err := mesh.Start(ctx, cfg)
			if err != nil {
				return err
			}
			data, _ := filepath.Abs(cfg.DataDir)
			creds, _ := filepath.Abs(m.AdminCreds()) // the ready line's paths are absolute
			router := "in-process"
			if pid := m.DataPlanePid(); pid != 0 {
				how := "started"
				if m.DataPlaneAdopted() {
					how = "adopted"
				}
				router = fmt.Sprintf("%d/%s/%s", pid, how, httpURL(tcpAddr(m.DataPlaneAdmin()), "/healthz"))
			}
			fmt.Fprintf(a.out, "redblack ready nats=%s http=%s data=%s creds=%s services=%s metrics=%s ui=%s router=%s in %s\n",
				m.URL(), m.HTTP(), data, creds, strings.Join(mesh.ServiceNames, ","), httpURL(m.AdminAddr(), "/metrics"), httpURL(m.UIAddr(), "/"),
				router, time.Since(start).Round(time.Millisecond))
			select {
			case <-ctx.Done():
				fmt.Fprintln(a.out, "redblack stopping")
			case <-m.Failed():
				fmt.Fprintln(a.out, "redblack stopping: a service failed")
			}
			return a.boundedStop(m.Stop, stopTimeout)
		},
	}
	cmd.Flags().StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory for JetStream files and instance logs (env REDBLACK_DATA)")
	cmd.Flags().BoolVar(&background, "background", false, "run in the background, its output in <data>/"+UpLog+": returns once it is ready, printing its ready line (stop it with redblack down)")
	cmd.Flags().DurationVar(&stopTimeout, "stop-timeout", stopTimeout, "after SIGINT or SIGTERM, exit within this long even if the shutdown is stuck (a second signal exits at once)")
	cmd.Flags().StringVar(&cfg.NATSListen, "nats", cfg.NATSListen, "address of the embedded NATS server (port 0: any free port); off loopback it needs --nats-tls-cert and --nats-tls-key")
	cmd.Flags().StringVar(&cfg.TLSCert, "nats-tls-cert", "", "TLS certificate of the NATS listener")
	cmd.Flags().StringVar(&cfg.TLSKey, "nats-tls-key", "", "TLS key of the NATS listener")
	cmd.Flags().BoolVar(&cfg.KeepInstances, "keep-instances", false, "leave instances running on exit; the next `up` with the same --data re-adopts them")
	cmd.Flags().StringVar(&cfg.Router.HTTP, "http", cfg.Router.HTTP, "address of the router's HTTP data plane (port 0: any free port)")
	cmd.Flags().BoolVar(&cfg.Provisioner.Local.Sandbox.Off, "no-sandbox", false, "run instances as up's own user (default, as root: each as its service's own unprivileged user, in a PID namespace of its own; see README, Security)")
	cmd.Flags().IntVar(&cfg.Router.Proxy.MaxConnsPerClient, "max-conns-per-client", 0, fmt.Sprintf("connections one client address may hold open at the data plane (0: %d; -1: no cap, behind a proxy)", proxy.DefaultMaxConnsPerClient))
	cmd.Flags().StringVar(&cfg.Router.HTTPS, "https", "", "TLS address of the router's data plane (HTTP/2 by ALPN, and HTTP/1.1); needs --https-cert and --https-key")
	cmd.Flags().StringVar(&cfg.Router.TLSCert, "https-cert", "", "the TLS certificate of --https (PEM file)")
	cmd.Flags().StringVar(&cfg.Router.TLSKey, "https-key", "", "the TLS key of --https (PEM file)")
	cmd.Flags().StringVar(&cfg.Admin, "admin", prom.DefaultAdmin, "address of the admin port: every service's Prometheus metrics on /metrics, the instances for Prometheus on /discovery/prometheus; empty for none")
	cmd.Flags().StringVar(&cfg.UI, "ui", dashboard.DefaultAddr, "address of the dashboard; empty for none")
	cmd.Flags().StringVar(&dataPlane.Admin, "router-admin", dataPlane.Admin, "address of the router process's /metrics and /healthz (how stale its tables are); empty for none (the default when --admin is empty)")
	cmd.Flags().BoolVar(&inProcessRouter, "in-process-router", false, "run the router in up's process (it then stops serving when up dies) rather than as its own supervised process")
	cmd.Flags().StringVar(&otlp, "otlp", "", "OTLP/HTTP endpoint URL (http://collector:4318) to export each release as a trace to")
	cmd.Flags().Var(&cfg.ProviderEgress, "provider-egress", "CIDR prefixes and addresses the analysis templates' providers (prometheus, web: the addresses teams choose) may be read from, comma-separated, repeatable (default: any but link-local)")
	cmd.Flags().DurationVar(&cfg.Watchdog.LatencySlack, "bake-latency-slack", cfg.Watchdog.LatencySlack, "a p99 increase below this never fails a bake or the watch after completion (the bake's absolute floor beside its ratio)")
	cmd.Flags().IntVar(&nodes, "nodes", 0, "run a NATS cluster of this many server processes (3 for replicas 3) and each service as its own supervised process, instead of everything in this process")
	cmd.Flags().IntVar(&copies, "copies", 1, "with --nodes: run this many processes of each of canary, watchdog, chaos and router (the routers share the --http port with SO_REUSEPORT), and of the provisioner with --provider aws (the local provisioner runs once per host: --hosts)")
	cmd.Flags().IntVar(&hostsN, "hosts", 1, "with --nodes and the local provider: run this many local provisioners as hosts h1…hN of this machine, each owning its own instances (files under <data>/hosts/hN)")
	awsf.register(cmd)
	return cmd
}

// otlpExporter exports to --otlp: an OTLP/HTTP collector's base URL
// (http://collector:4318), to which the traces' path /v1/traces is added
// as OTEL_EXPORTER_OTLP_ENDPOINT's is (the SDK's WithEndpointURL would post
// to "/", which a collector answers 404), or a URL with its own path, used
// as it is.
func otlpExporter(ctx context.Context, endpoint string) (*otlptrace.Exporter, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--otlp %q: want the collector's URL, http://HOST:4318", endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, fmt.Errorf("--otlp %s: %w", endpoint, err)
	}
	return exp, nil
}

// egressArgs passes the providers' egress allow-list to a service process.
func egressArgs(e analysis.Egress) []string {
	if len(e) == 0 {
		return nil
	}
	return []string{"--provider-egress", e.String()}
}

// tcpAddr is addr as a net.Addr (nil for "").
func tcpAddr(addr string) net.Addr {
	if addr == "" {
		return nil
	}
	a, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil
	}
	return a
}

// httpURL is http://addr+path, or "-" without an address.
func httpURL(addr net.Addr, path string) string {
	if addr == nil {
		return "-"
	}
	return "http://" + addr.String() + path
}

// upCluster is `up --nodes N`: the production shape on this machine.
func (a *app) upCluster(ctx context.Context, stopTimeout time.Duration, cfg mesh.Config, cc cluster.Config, start time.Time) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(cfg.NATSListen)
	if err != nil {
		return fmt.Errorf("--nats %q: %w", cfg.NATSListen, err)
	}
	// the nodes' files have no TLS: loopback only
	if err := mesh.CheckListen(cfg.NATSListen, false); err != nil {
		return fmt.Errorf("up --nodes: %w; a cluster across hosts is configured with `redblack nats config` (and TLS in the node files)", err)
	}
	first, _ := strconv.Atoi(port)
	cc.Self, cc.DataDir, cc.Host, cc.ClientPort, cc.HTTP = self, cfg.DataDir, host, first, cfg.Router.HTTP
	cc.KeepInstances, cc.Out, cc.Log, cc.LogLevel = cfg.KeepInstances, a.err, cfg.Log, a.logLevel
	c, err := cluster.Start(ctx, cc)
	if err != nil {
		return err
	}
	data, _ := filepath.Abs(cfg.DataDir)
	var ns, ms, ss []string
	for _, n := range c.Nodes() {
		ns = append(ns, fmt.Sprintf("%s/%d/%s", n.Name, n.Pid, n.URL))
		ms = append(ms, n.Name+"/"+n.Monitor)
	}
	for _, s := range c.Services() {
		ss = append(ss, fmt.Sprintf("%s/%d", s.Name, s.Pid))
	}
	creds, _ := filepath.Abs(c.AdminCreds())
	fmt.Fprintf(a.out, "redblack ready nats=%s http=%s data=%s creds=%s nodes=%s monitor=%s services=%s metrics=%s ui=%s in %s\n",
		c.URLs(), c.HTTP(), data, creds, strings.Join(ns, ","), strings.Join(ms, ","), strings.Join(ss, ","),
		httpURL(c.AdminAddr(), "/metrics"), httpURL(c.UIAddr(), "/"), time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	fmt.Fprintln(a.out, "redblack stopping")
	return a.boundedStop(func() error { c.Stop(); return nil }, stopTimeout)
}

// routerTLS checks the router's --https flags, makes the files' paths
// absolute, and returns them as the router process's flags (none without
// --https).
func routerTLS(r *router.Config) ([]string, error) {
	if r.HTTPS == "" {
		if r.TLSCert != "" || r.TLSKey != "" {
			return nil, fmt.Errorf("--https-cert and --https-key need --https")
		}
		return nil, nil
	}
	if r.TLSCert == "" || r.TLSKey == "" {
		return nil, fmt.Errorf("--https %s needs --https-cert and --https-key", r.HTTPS)
	}
	var err error
	for _, f := range []*string{&r.TLSCert, &r.TLSKey} {
		if *f, err = filepath.Abs(*f); err != nil {
			return nil, err
		}
		if _, err := os.Stat(*f); err != nil {
			return nil, fmt.Errorf("--https: %w", err)
		}
	}
	return []string{"--https", r.HTTPS, "--https-cert", r.TLSCert, "--https-key", r.TLSKey}, nil
}

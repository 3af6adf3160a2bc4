// Package cluster runs redblack on one machine in its production shape:
// a NATS cluster of N server processes (JetStream, replicas 3) and each of
// the five services as its own process with its own creds, all supervised
// (a process that dies is restarted with back-off and the death logged).
// The processes are this binary run again (`redblack nats node`, `redblack
// run SERVICE`): the same programs as nats-server and the services' own
// binaries. `redblack up --nodes N` runs it.
package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/deploy/natsconf"
	"github.com/redblack/redblack/deploy/supervise"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/topology"
)

// Config configures the cluster.
type Config struct {
	// Self is the redblack executable the processes run.
	Self    string
	DataDir string
	Nodes   int
	// Host the nodes listen on (loopback); ClientPort is the first node's
	// client port, the next nodes taking the next ones (0: free ports).
	Host       string
	ClientPort int
	// HTTP is the router's data plane address (port 0: a free one).
	HTTP string
	// Copies is how many processes run each of canary, watchdog, chaos and
	// router (default 1). Copies of a service share its durable consumers
	// and fence each release step by the record's phase and each
	// long-running task by a lease; router copies serve the one HTTP
	// address with SO_REUSEPORT. The provisioner runs in Copies copies
	// with SharedFleet, else once per host of Hosts: a local provisioner
	// owns the instances of its host.
	Copies int
	// Hosts runs that many local provisioners, as hosts h1…hN of one
	// machine, each owning its own instances (default 1: one provisioner,
	// named for the machine). Not with SharedFleet.
	Hosts int
	// SharedFleet: the provisioner's provider is one every copy sees (aws),
	// so it runs in Copies copies too; they share commands and release
	// steps, and one at a time (the observer lease) observes the fleet.
	SharedFleet bool
	// ProvisionerArgs and RouterArgs are more flags for those processes:
	// the aws provider's and the ALB edge's; WatchdogArgs the watchdog's,
	// CanaryArgs the canary's.
	ProvisionerArgs, RouterArgs, WatchdogArgs, CanaryArgs []string
	// KeepInstances leaves the instances running when the cluster stops.
	KeepInstances bool
	// Out receives the services' output (their logs); the nodes log into
	// <data>/nodes/nN.log.
	Out      io.Writer
	Log      zerolog.Logger
	LogLevel string
	// Admin serves every process's metrics on one /metrics, each series
	// labelled with its process ("" for none); UI serves the dashboard;
	// Spans receives each release as a trace: as in the one-process up.
	Admin string
	UI    string
	Spans sdktrace.SpanExporter
}

// Process is one supervised process.
type Process struct {
	Name    string
	URL     string // a node's client URL
	Monitor string // a node's monitoring URL (varz, jsz, healthz)
	Pid     int
}

// Cluster is a running cluster.
type Cluster struct {
	cfg   Config
	plan  natsconf.Plan
	sup   *supervise.Supervisor
	admin string // the admin's creds file
	http  string
	logs  []*os.File
	// services are the service processes' names, in start order
	services []string
	// auth issues and revokes the teams' users; nc is up's own admin
	// connection (the admin endpoints, the observers)
	auth      *auth.Authority
	nc        *nats.Conn
	cancel    context.CancelFunc
	observers *mesh.Observers
	// metrics are the /metrics URLs of the service processes, by name
	metrics map[string]string
	// confDir and nodeConfs: the nodes' configuration, written again
	// after a revocation so that a node restarted keeps it
	confDir string
}

// Start writes the nodes' configuration, starts and supervises the nodes,
// waits for JetStream's cluster, reconciles the topology at its replicas,
// then starts and supervises the services and waits for each to answer.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("cluster: %d nodes", cfg.Nodes)
	}
	data, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, sup: supervise.New(cfg.Log), metrics: map[string]string{}}
	authority, err := auth.Open(filepath.Join(data, "creds"))
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.auth = authority
	accounts, err := authority.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if c.plan, err = plan(cfg, filepath.Join(data, "nodes")); err != nil {
		return nil, err
	}
	c.confDir = filepath.Join(data, "nodes", "conf")
	paths, err := natsconf.Write(c.confDir, c.plan, accounts)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if c.http, err = mesh.FreeAddr(cfg.HTTP); err != nil {
		return nil, err
	}
	for i, n := range c.plan.Nodes {
		log, err := os.OpenFile(filepath.Join(data, "nodes", n.Name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.logs = append(c.logs, log)
		if err := c.sup.Start(supervise.Spec{Name: n.Name, Path: cfg.Self, Args: []string{"nats", "node", "-c", paths[i]}, Out: log}); err != nil {
			c.Stop()
			return nil, err
		}
	}
	admin, err := authority.Admin("admin")
	if err == nil {
		c.admin, err = authority.WriteCreds("admin", admin)
	}
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	nc, err := nats.Connect(c.URLs(), nats.UserCredentials(c.admin), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.Name("redblack-up"))
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.nc = nc
	if err := c.awaitJetStream(ctx, nc); err != nil {
		c.Stop()
		return nil, err
	}
	for _, name := range mesh.ServiceNames {
		creds, err := authority.Service(name)
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("cluster: %w", err)
		}
		path, err := authority.WriteCreds(name, creds)
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("cluster: %w", err)
		}
		args := []string{"run", name, "--server", c.URLs(), "--creds", path, "--log-level", cfg.LogLevel}
		copies := max(cfg.Copies, 1)
		perCopy := func(int) []string { return nil }
		switch name {
		case "provisioner":
			if !cfg.KeepInstances {
				args = append(args, "--stop-instances")
			}
			args = append(args, cfg.ProvisionerArgs...)
			switch {
			case cfg.SharedFleet:
				perCopy = func(int) []string { return []string{"--data", data} }
			case cfg.Hosts > 1:
				// local provisioners as hosts h1…hN, each with its own
				// files (h1's are the one provisioner's of other runs)
				copies = cfg.Hosts
				perCopy = func(i int) []string {
					dir := data
					if i > 1 {
						dir = filepath.Join(data, "hosts", HostName(i))
					}
					return []string{"--data", dir, "--host", HostName(i)}
				}
			default:
				copies = 1
				perCopy = func(int) []string { return []string{"--data", data} }
			}
		case "watchdog":
			args = append(args, cfg.WatchdogArgs...)
		case "canary":
			args = append(args, cfg.CanaryArgs...)
		case "router":
			args = append(args, "--http", c.http, "--admin", "")
			args = append(args, cfg.RouterArgs...)
			if copies > 1 {
				args = append(args, "--reuse-port")
			}
		}
		for i := range copies {
			proc := CopyName(name, i+1)
			more := perCopy(i + 1)
			if cfg.Admin != "" {
				// each process serves its own metrics, which up's admin
				// port gathers
				addr, err := mesh.FreeAddr("127.0.0.1:0")
				if err != nil {
					c.Stop()
					return nil, err
				}
				flag := "--metrics"
				if name == "router" {
					flag = "--admin"
				}
				more = append(more, flag, addr)
				c.metrics[proc] = "http://" + addr + "/metrics"
			}
			sp := supervise.Spec{Name: proc, Path: cfg.Self, Args: append(slices.Clip(args), more...), Out: cfg.Out}
			if name == "router" {
				// the data plane outlives up, as in the one-process up: a
				// SIGKILLed up's routers serve on from their last tables,
				// and the next up adopts them
				file := strings.ReplaceAll(proc, "#", "-")
				sp.State, sp.Log = filepath.Join(data, "dataplane-"+file+".json"), filepath.Join(data, "logs", file+".log")
			}
			if err := c.sup.Start(sp); err != nil {
				c.Stop()
				return nil, err
			}
			c.services = append(c.services, proc)
		}
	}
	if err := awaitServices(ctx, nc); err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.serve(cfg); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// plan places the nodes: from the client port given, or on free ports.
func plan(cfg Config, store string) (natsconf.Plan, error) {
	host := cfg.Host
	if host == "" {
		host = natsconf.DefaultHost
	}
	if cfg.ClientPort > 0 {
		return natsconf.NewPlan(cfg.Nodes, host, cfg.ClientPort, cfg.ClientPort+2000, cfg.ClientPort+4000, store), nil
	}
	p := natsconf.Plan{Cluster: natsconf.DefaultCluster, Host: host}
	for i := range cfg.Nodes {
		var ports [3]int
		for j := range ports {
			addr, err := mesh.FreeAddr(net.JoinHostPort(host, "0"))
			if err != nil {
				return p, err
			}
			_, port, _ := net.SplitHostPort(addr)
			fmt.Sscan(port, &ports[j])
		}
		name := fmt.Sprintf("n%d", i+1)
		p.Nodes = append(p.Nodes, natsconf.Node{Name: name, Client: ports[0], Route: ports[1], Monitor: ports[2], Store: filepath.Join(store, name)})
	}
	return p, nil
}

// awaitJetStream waits until every node is routed and JetStream answers,
// then reconciles the topology at the cluster's replicas.
func (c *Cluster) awaitJetStream(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		// a request sent before the cluster has a meta leader gets no
		// answer: each ask has its own deadline
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil && len(nc.Servers()) >= c.cfg.Nodes {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("cluster: JetStream did not come up on %d nodes in 60s (see %s)", c.cfg.Nodes, filepath.Join(c.cfg.DataDir, "nodes"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows, err := topology.Reconcile(rctx, js, topology.DefaultOptions())
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	for _, r := range rows {
		if r.Action != topology.ActionOk {
			c.cfg.Log.Info().Str("kind", r.Kind).Str("name", r.Name).Str("field", r.Field).Str("exists", r.Has).Str("wanted", r.Wants).Msg("topology: " + r.Action)
		}
	}
	// the services start once every stream can take a write: a sample or
	// an event published to a stream still electing its leader is lost
	if err := topology.AwaitLeaders(rctx, js); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// awaitServices pings each service until it answers, or 60 s pass.
func awaitServices(ctx context.Context, nc *nats.Conn) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range mesh.ServiceNames {
		for {
			if _, err := nc.Request("$SRV.PING.redblack-"+name, nil, 250*time.Millisecond); err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("cluster: service %s did not come up", name)
			}
		}
	}
	return nil
}

// URLs are the nodes' client URLs, comma-separated (for --server).
func (c *Cluster) URLs() string { return c.plan.URLs() }

// HTTP is the router's data plane address.
func (c *Cluster) HTTP() string { return c.http }

// AdminCreds is the admin's creds file.
func (c *Cluster) AdminCreds() string { return c.admin }

// Nodes are the NATS nodes with their client URLs and pids.
func (c *Cluster) Nodes() []Process {
	var out []Process
	for _, n := range c.plan.Nodes {
		out = append(out, Process{Name: n.Name, URL: fmt.Sprintf("nats://%s:%d", c.plan.Host, n.Client),
			Monitor: fmt.Sprintf("http://%s:%d", c.plan.Host, n.Monitor), Pid: c.sup.Pid(n.Name)})
	}
	return out
}

// Services are the service processes with their pids.
func (c *Cluster) Services() []Process {
	var out []Process
	for _, name := range c.services {
		out = append(out, Process{Name: name, Pid: c.sup.Pid(name)})
	}
	return out
}

// HostName is the name of the i-th local provisioner's host under Hosts.
func HostName(i int) string { return fmt.Sprintf("h%d", i) }

// CopyName is the process name of a service's n-th copy: canary, then
// canary#2, canary#3.
func CopyName(service string, n int) string {
	if n <= 1 {
		return service
	}
	return fmt.Sprintf("%s#%d", service, n)
}

// Stop stops the services, then the nodes.
func (c *Cluster) Stop() {
	if c.cancel != nil {
		c.cancel()
	}
	c.observers.Close()
	if c.nc != nil {
		c.nc.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c.cfg.KeepInstances {
		c.sup.Leave(ctx, 10*time.Second) // the routers serve on, as the instances do
	} else {
		c.sup.Stop(ctx, 10*time.Second)
	}
	for _, f := range c.logs {
		f.Close()
	}
}

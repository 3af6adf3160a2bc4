package natsconf_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/redblack/redblack/deploy/natsconf"
	"github.com/redblack/redblack/shared/auth"
)

// committed is the plan deploy/nats holds.
func committed() natsconf.Plan {
	return natsconf.NewPlan(3, natsconf.DefaultHost, natsconf.DefaultClientPort, natsconf.DefaultRoutePort, natsconf.DefaultMonitorPort, "/var/lib/redblack/nats")
}

// TestCommittedConfigsAreTheGenerators: deploy/nats is what `redblack nats
// config --out deploy/nats --no-accounts` writes, so the two never drift.
func TestCommittedConfigsAreTheGenerators(t *testing.T) {
	p := committed()
	for i, n := range p.Nodes {
		b, err := os.ReadFile(filepath.Join("..", "nats", n.Name+".conf"))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != p.Config(i) {
			t.Errorf("deploy/nats/%s.conf differs from the generator's; run: redblack nats config --out deploy/nats --no-accounts", n.Name)
		}
	}
}

// TestConfigsParse parses every node file of deploy/nats, with an accounts
// file from a real authority beside it, with the server's own parser, and
// checks what each node will be.
func TestConfigsParse(t *testing.T) {
	dir := t.TempDir()
	a, err := auth.Open(filepath.Join(t.TempDir(), "creds"))
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := a.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, natsconf.AccountsFile), []byte(accounts), 0o600); err != nil {
		t.Fatal(err)
	}
	p := committed()
	for _, n := range p.Nodes {
		b, err := os.ReadFile(filepath.Join("..", "nats", n.Name+".conf"))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, n.Name+".conf")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		switch {
		case opts.ServerName != n.Name || opts.Port != n.Client || opts.HTTPPort != n.Monitor:
			t.Errorf("%s: name %q port %d monitor %d", n.Name, opts.ServerName, opts.Port, opts.HTTPPort)
		case !opts.JetStream || opts.StoreDir != n.Store:
			t.Errorf("%s: jetstream %v store %q", n.Name, opts.JetStream, opts.StoreDir)
		case opts.Cluster.Name != natsconf.DefaultCluster || opts.Cluster.Port != n.Route || len(opts.Routes) != 3:
			t.Errorf("%s: cluster %q port %d routes %v", n.Name, opts.Cluster.Name, opts.Cluster.Port, opts.Routes)
		case len(opts.TrustedOperators) != 1 || opts.SystemAccount == "" || opts.AccountResolver == nil:
			t.Errorf("%s: operator mode: %d operators, system account %q, resolver %v", n.Name, len(opts.TrustedOperators), opts.SystemAccount, opts.AccountResolver)
		}
	}
	// one node is a server of its own: no cluster to wait for
	one := natsconf.NewPlan(1, "127.0.0.1", 4222, 6222, 8222, filepath.Join(dir, "store"))
	path := filepath.Join(dir, "single.conf")
	if err := os.WriteFile(path, []byte(one.Config(0)), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("one node: %v", err)
	}
	if !opts.JetStream || opts.Cluster.Port != 0 || len(opts.Routes) != 0 {
		t.Errorf("one node: jetstream %v, cluster port %d, routes %v", opts.JetStream, opts.Cluster.Port, opts.Routes)
	}
}

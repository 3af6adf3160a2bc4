// Package natsconf writes the configuration of a NATS cluster for the stock
// nats-server binary: one file per node (JetStream, the cluster's routes,
// its ports, its store) and the accounts file every node includes (the
// operator and accounts of redblack's authority). This is the cluster a
// team runs when it outgrows one machine; deploy/nats holds the files this
// writes for three nodes on one host.
package natsconf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// AccountsFile is the name of the accounts file the nodes include.
const AccountsFile = "accounts.conf"

// Node is one server of the cluster.
type Node struct {
	Name                   string
	Client, Route, Monitor int    // ports
	Store                  string // JetStream's directory
}

// Plan is a cluster: its name, the host its nodes listen on, and its nodes.
type Plan struct {
	Cluster string
	Host    string
	Nodes   []Node
}

// Defaults of a plan.
const (
	DefaultCluster     = "redblack"
	DefaultHost        = "127.0.0.1"
	DefaultClientPort  = 4222
	DefaultRoutePort   = 6222
	DefaultMonitorPort = 8222
)

// NewPlan is n nodes n1…nN on host, with consecutive ports from the bases
// given and their stores under store.
func NewPlan(n int, host string, client, route, monitor int, store string) Plan {
	p := Plan{Cluster: DefaultCluster, Host: host}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		p.Nodes = append(p.Nodes, Node{Name: name, Client: client + i, Route: route + i, Monitor: monitor + i, Store: filepath.Join(store, name)})
	}
	return p
}

// URLs are the client URLs of every node, for --server.
func (p Plan) URLs() string {
	var us []string
	for _, n := range p.Nodes {
		us = append(us, fmt.Sprintf("nats://%s:%d", p.Host, n.Client))
	}
	return strings.Join(us, ",")
}

// Config is node i's configuration file.
func (p Plan) Config(i int) string {
	n := p.Nodes[i]
	var routes []string
	for _, o := range p.Nodes {
		routes = append(routes, fmt.Sprintf("    nats-route://%s:%d", p.Host, o.Route))
	}
	// one node is no cluster: with a cluster block, JetStream would wait for
	// routes that never come
	cluster := ""
	if len(p.Nodes) > 1 {
		cluster = fmt.Sprintf("cluster {\n  name: %s\n  listen: %s:%d\n  routes: [\n%s\n  ]\n}\n\n", p.Cluster, p.Host, n.Route, strings.Join(routes, "\n"))
	}
	return fmt.Sprintf(`# redblack NATS node %[1]s of %[2]d (written by `+"`redblack nats config`"+`)
# Run: nats-server -c %[1]s.conf   (accounts.conf beside it)
server_name: %[1]s
listen: %[3]s:%[4]d
http: %[3]s:%[5]d

jetstream {
  store_dir: %[6]q
  max_memory_store: 256MB
  max_file_store: 10GB
}

%[7]s# operator mode: only users signed by redblack's authority connect
include ./`+AccountsFile+`
`, n.Name, len(p.Nodes), p.Host, n.Client, n.Monitor, n.Store, cluster)
}

// Write writes every node's file into dir, and the accounts file when
// accounts is not empty. It returns the node files' paths.
func Write(dir string, p Plan, accounts string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for i, n := range p.Nodes {
		path := filepath.Join(dir, n.Name+".conf")
		if err := os.WriteFile(path, []byte(p.Config(i)), 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	if accounts != "" {
		// the accounts file holds the operator's and accounts' JWTs: public
		// keys and signed claims, no seed; still, only the nodes read it
		if err := os.WriteFile(filepath.Join(dir, AccountsFile), []byte(accounts), 0o600); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/deploy/natsconf"
	"github.com/redblack/redblack/shared/auth"
)

func (a *app) natsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "nats", Short: "NATS for running redblack past one machine"}
	var out, data, host, store string
	var nodes, client, route, monitor int
	var noAccounts bool
	config := &cobra.Command{
		Use:   "config --out DIR [--nodes 3] [--host 127.0.0.1] [--store DIR] [--data DIR]",
		Short: "Write a NATS cluster's configuration for the stock nats-server, and every service's creds",
		Long: `Writes one configuration file per node (n1.conf …) for the stock nats-server
binary: JetStream with its store, the cluster's routes, the client and monitoring
ports; and accounts.conf, which every node includes: operator mode with
redblack's operator and accounts from the authority in --data (created if
missing), so that only users it signed connect. It also writes the admin's
and every service's creds into <data>/creds. Then:

  nats-server -c DIR/n1.conf   (and n2, n3)
  redblack topology check --server URLS --creds <data>/creds/admin.creds
  canary --server URLS --creds <data>/creds/canary.creds   (and the others)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out: the directory to write the configuration into")
			}
			if nodes < 1 || nodes > 32 {
				return fmt.Errorf("--nodes %d: want 1..32 (3 for a cluster that survives a node's loss)", nodes)
			}
			p := natsconf.NewPlan(nodes, host, client, route, monitor, store)
			accounts := ""
			if !noAccounts {
				authority, err := auth.Open(filepath.Join(data, "creds"))
				if err != nil {
					return err
				}
				if accounts, err = authority.ServerConfig(); err != nil {
					return err
				}
				names := append([]string{"admin"}, mesh.ServiceNames...)
				for _, name := range names {
					var creds []byte
					if name == "admin" {
						creds, err = authority.Admin("admin")
					} else {
						creds, err = authority.Service(name)
					}
					if err != nil {
						return err
					}
					if _, err := authority.WriteCreds(name, creds); err != nil {
						return err
					}
				}
			}
			paths, err := natsconf.Write(out, p, accounts)
			if err != nil {
				return err
			}
			for _, path := range paths {
				fmt.Fprintln(a.out, "wrote", path)
			}
			if accounts != "" {
				fmt.Fprintln(a.out, "wrote", filepath.Join(out, natsconf.AccountsFile), "and the creds in", filepath.Join(data, "creds"))
			}
			fmt.Fprintf(a.out, "servers: %s\n", p.URLs())
			return nil
		},
	}
	f := config.Flags()
	f.StringVar(&out, "out", "", "directory to write the files into")
	f.StringVar(&data, "data", dataDir(), "redblack's data directory: the authority's keys and the creds (env REDBLACK_DATA)")
	f.IntVar(&nodes, "nodes", 3, "nodes")
	f.StringVar(&host, "host", natsconf.DefaultHost, "the address the nodes listen on (off loopback, put TLS in the node files)")
	f.IntVar(&client, "client-port", natsconf.DefaultClientPort, "first node's client port (the next nodes take the next ones)")
	f.IntVar(&route, "route-port", natsconf.DefaultRoutePort, "first node's cluster route port")
	f.IntVar(&monitor, "monitor-port", natsconf.DefaultMonitorPort, "first node's monitoring port")
	f.StringVar(&store, "store", "/var/lib/redblack/nats", "JetStream's directory; each node uses <store>/nN")
	f.BoolVar(&noAccounts, "no-accounts", false, "write only the node files (deploy/nats is written so)")
	cmd.AddCommand(config, a.natsNodeCmd())
	return cmd
}

// dataDir is $REDBLACK_DATA, or .redblack.
func dataDir() string {
	if d := os.Getenv("REDBLACK_DATA"); d != "" {
		return d
	}
	return ".redblack"
}

package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"

	"github.com/redblack/redblack/services/canary"
	"github.com/redblack/redblack/services/chaos"
	"github.com/redblack/redblack/services/provisioner"
	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/services/watchdog"
	"github.com/redblack/redblack/shared/svcmain"
)

// programs are the five services as programs, by name.
var programs = map[string]func() svcmain.Program{
	"canary": canary.Program, "provisioner": provisioner.Program, "router": router.Program,
	"watchdog": watchdog.Program, "chaos": chaos.Program,
}

// runCmd runs one service as this process: what `up --nodes` starts, the
// same program as the service's own binary.
func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "run SERVICE [flags]",
		Short:              "Run one service in this process (the flags of its binary)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 || programs[args[0]] == nil {
				return fmt.Errorf("run: want one of canary, provisioner, router, watchdog, chaos")
			}
			if code := svcmain.Run(programs[args[0]](), args[1:], a.err); code != 0 {
				return exitCode{code: code}
			}
			return nil
		},
	}
}

// natsNodeCmd runs one NATS server from a configuration file: the stock
// nats-server's own library, for `up --nodes` to run a cluster without a
// nats-server binary installed.
func (a *app) natsNodeCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:    "node -c FILE",
		Short:  "Run one NATS server from a configuration file (as nats-server -c FILE)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			opts, err := server.ProcessConfigFile(config)
			if err != nil {
				return fmt.Errorf("nats node: %w", err)
			}
			srv, err := server.NewServer(opts)
			if err != nil {
				return fmt.Errorf("nats node: %w", err)
			}
			srv.ConfigureLogger()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go srv.Start()
			if !srv.ReadyForConnections(30 * time.Second) {
				srv.Shutdown()
				return fmt.Errorf("nats node %s: not ready in 30s", opts.ServerName)
			}
			<-ctx.Done()
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", "", "the node's configuration file (from `redblack nats config`)")
	return cmd
}

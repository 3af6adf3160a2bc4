package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/redblack/redblack/dashboard"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
)

func (a *app) dashboardCmd() *cobra.Command {
	addr := dashboard.DefaultAddr
	cmd := &cobra.Command{
		Use:   "dashboard [--ui ADDR]",
		Short: "Serve the dashboard against any NATS (the one `redblack up` serves on --ui)",
		Long: `Serves the live dashboard: per service the server groups with their
instances and weights, the release in flight on a timeline, the canary's
latency distributions and error counts, the bake's live figures against its
limits, rollbacks with their reasons, Chaos Monkey's kills, and an audit view
of the release events. It reads with --creds (an auditor's or the admin's);
its rollback and abort buttons act only with the creds the viewer pastes into
the page, so the NATS server's permissions decide.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.close()
			url := a.conn.URL
			d := dashboard.New(dashboard.Config{NC: c.nc, Log: logging.New(a.err, "dashboard", a.logLevel),
				Dial: func(creds []byte) (*nats.Conn, error) {
					opts, err := natsx.CredsOptions(creds)
					if err != nil {
						return nil, err
					}
					return nats.Connect(url, append(opts, nats.Name("redblack-dashboard-viewer"))...)
				}})
			if err := d.Run(ctx); err != nil {
				return err
			}
			at, err := dashboard.Serve(ctx, addr, d)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "dashboard on http://%s/ (nats %s)\n", at, url)
			<-ctx.Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "ui", addr, "address to serve the dashboard on")
	return cmd
}

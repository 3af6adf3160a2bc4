// Package cli is the redblack command line: `redblack up`, `demo`, `service`,
// `release`, `events`, `status` and `bench`. Each command is a thin shell
// over NATS: it publishes events and reads streams and buckets.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/natsx"
)

// app holds what every command shares.
type app struct {
	conn     natsx.Config
	out, err io.Writer
	logLevel string
	// args is the command line as given (up --background starts itself
	// again with it)
	args []string
}

// Main runs the command line with args and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	a := &app{conn: natsx.DefaultConfig(), out: stdout, err: stderr, args: args}
	a.conn.FromEnv(os.LookupEnv)
	a.conn.Name = "redblack-cli"
	root := a.root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		if ec, ok := err.(exitCode); ok {
			if ec.msg != "" {
				fmt.Fprintln(stderr, "redblack:", ec.msg)
			}
			return ec.code
		}
		fmt.Fprintln(stderr, "redblack:", err)
		return 1
	}
	return 0
}

// exitCode is an error that ends the process with a given status.
type exitCode struct {
	code int
	msg  string
}

func (e exitCode) Error() string { return e.msg }

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "redblack",
		Short:         "Red/black releases with canaries, instant rollback and Chaos Monkey, over NATS JetStream",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	f.StringVar(&a.conn.URL, "server", a.conn.URL, "NATS server URL (env REDBLACK_SERVER)")
	f.StringVar(&a.conn.Creds, "creds", a.conn.Creds, "NATS credentials `file` (env REDBLACK_CREDS; default: the admin creds of redblack up in $REDBLACK_DATA/creds or .redblack/creds)")
	f.StringVar(&a.conn.TLSCert, "tls-cert", a.conn.TLSCert, "TLS client certificate (env REDBLACK_TLS_CERT)")
	f.StringVar(&a.conn.TLSKey, "tls-key", a.conn.TLSKey, "TLS client key (env REDBLACK_TLS_KEY)")
	f.StringVar(&a.conn.TLSCA, "tls-ca", a.conn.TLSCA, "TLS CA bundle (env REDBLACK_TLS_CA)")
	f.StringVar(&a.logLevel, "log-level", "info", "log level of in-process services: debug, info, warn, error")
	root.AddCommand(a.upCmd(), a.downCmd(), a.loadCmd(), a.demoCmd(), a.serviceCmd(), a.analysisCmd(), a.releaseCmd(), a.rollbackCmd(), a.chaosCmd(), a.eventsCmd(), a.statusCmd(), a.fleetCmd(), a.trafficCmd(), a.benchCmd(), a.canaryCmd(), a.teamCmd(), a.exampleCmd(), a.dashboardCmd(), a.topologyCmd(), a.natsCmd(), a.runCmd(), a.volumeCmd())
	return root
}

// client is a connection for one command.
type client struct {
	nc *nats.Conn
	js jetstream.JetStream
	id auth.Identity // who the creds say we are ("" without creds)
	// warn receives notices of what the client rides out (the CLI's stderr)
	warn io.Writer
}

// DefaultCreds is where the CLI looks for creds when neither --creds nor
// REDBLACK_CREDS names a file: the admin creds `redblack up` writes into
// its data directory ($REDBLACK_DATA, default .redblack).
func DefaultCreds() string {
	return filepath.Join(dataDir(), "creds", "admin.creds")
}

func (a *app) dial() (*client, error) {
	if a.conn.Creds == "" {
		if _, err := os.Stat(DefaultCreds()); err == nil {
			a.conn.Creds = DefaultCreds()
		}
	}
	var id auth.Identity
	if a.conn.Creds != "" {
		b, err := os.ReadFile(a.conn.Creds)
		if err != nil {
			return nil, fmt.Errorf("--creds: %w", err)
		}
		if id, err = auth.IdentityOf(b); err != nil {
			return nil, fmt.Errorf("--creds %s: %w", a.conn.Creds, err)
		}
	}
	nc, err := natsx.Connect(a.conn)
	if err != nil {
		return nil, fmt.Errorf("%w (is `redblack up` running? set --server)", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &client{nc: nc, js: js, id: id, warn: a.err}, nil
}

// call makes a team API call (services/canary/api) as the creds' user.
func (c *client) call(verb, service string, body, out any) error {
	if c.id.Team == "" {
		return fmt.Errorf("no credentials: pass --creds (a team's creds from `redblack team add`), set REDBLACK_CREDS, or run where `redblack up` keeps %s", DefaultCreds())
	}
	return api.Call(c.nc, c.id, verb, service, body, out)
}

func (c *client) close() { _ = c.nc.Drain() }

func (c *client) kv(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w (has `redblack up` run against this server?)", bucket, err)
	}
	return kv, nil
}

func timeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// withBucket connects, opens bucket and runs f with a 10 s deadline.
func (a *app) withBucket(bucket string, f func(ctx context.Context, kv jetstream.KeyValue) error) error {
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := timeout(10 * time.Second)
	defer cancel()
	kv, err := c.kv(ctx, bucket)
	if err != nil {
		return err
	}
	return f(ctx, kv)
}

// Package svcmain is the whole of a service binary's main: flags and
// REDBLACK_* environment for the NATS connection and log level, connect
// (waiting for NATS if it is not up yet), run the service until SIGINT or
// SIGTERM, drain. The service binaries and `redblack run SERVICE` both
// use it.
package svcmain

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/loop"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/procfs"
	"github.com/redblack/redblack/shared/prom"
)

// OwnerCheck is how often a program started with --exit-without looks for
// its path.
const OwnerCheck = 2 * time.Second

// Runner is a service.
type Runner interface {
	Run(ctx context.Context) error
}

// Program is one service as a program: its name, the flags it adds, and how
// to build it on a connection.
type Program struct {
	Name string
	// Bind registers the service's own flags (nil for none).
	Bind func(*flag.FlagSet)
	// Build makes the service once the flags are parsed and NATS is up.
	Build func(*nats.Conn, zerolog.Logger) Runner
}

// Main runs the program with the process's arguments and exits with its
// status.
func Main(p Program) {
	_ = procfs.CloseOnExecInherited() // children get only what is meant for them
	os.Exit(Run(p, os.Args[1:], os.Stderr))
}

// Run runs the program with args, logging to stderr, and returns the exit
// status: 0 after a clean stop on SIGINT or SIGTERM, 2 for bad flags, 1 for
// anything else.
func Run(p Program, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(p.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn := natsx.DefaultConfig()
	conn.Name = "redblack-" + p.Name
	conn.FromEnv(os.LookupEnv)
	conn.BindFlags(fs)
	level := fs.String("log-level", "info", "debug, info, warn or error")
	metricsAddr := fs.String("metrics", "", "address to serve the service's Prometheus metrics on (/metrics); empty for none")
	exitWithout := fs.String("exit-without", "", "a path (the data directory of the up that started it): once it is gone, stop as on SIGTERM")
	if p.Bind != nil {
		p.Bind(fs)
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := logging.New(stderr, p.Name, *level)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// started before NATS, or during an outage of the whole cluster, the
	// service waits for it (a refusal of its creds ends it at once)
	nc, err := natsx.ConnectWaiting(ctx, conn, func(n int, err error) {
		log.Warn().Err(err).Int("attempt", n).Msg("NATS unreachable: waiting for it")
	})
	if err != nil {
		log.Error().Err(err).Send()
		return 1
	}
	defer nc.Drain()
	svc := p.Build(nc, log)
	if *metricsAddr != "" {
		var exporters []prom.Exporter
		if e, ok := svc.(prom.Exporter); ok {
			exporters = append(exporters, e)
		}
		reg, err := prom.NewRegistry(exporters...)
		if err != nil {
			log.Error().Err(err).Send()
			return 1
		}
		srv, addr, err := prom.Serve(*metricsAddr, reg, nil)
		if err != nil {
			log.Error().Err(err).Send()
			return 1
		}
		defer srv.Close()
		log.Info().Str("metrics", "http://"+addr.String()+"/metrics").Msg("serving metrics")
	}
	if *exitWithout != "" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go loop.Every(ctx, OwnerCheck, func() {
			if _, err := os.Stat(*exitWithout); os.IsNotExist(err) {
				log.Warn().Str("path", *exitWithout).Msg("what this process belongs to is gone: stopping")
				cancel()
			}
		})
	}
	if err := svc.Run(ctx); err != nil {
		log.Error().Err(err).Send()
		return 1
	}
	return 0
}

// Failed is a Runner that fails with err: for a Build that cannot make its
// service (a provider's configuration that does not load).
func Failed(err error) Runner { return failed{err} }

type failed struct{ err error }

func (f failed) Run(context.Context) error { return f.err }

// List is a flag that takes a comma-separated list and may be repeated.
type List []string

// String is the list, comma-separated.
func (l *List) String() string { return strings.Join(*l, ",") }

// Set appends the comma-separated values of one occurrence.
func (l *List) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

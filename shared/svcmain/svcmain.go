// Package svcmain is the whole of a service binary's main: flags and
// REDBLACK_* environment for the NATS connection and log level, connect,
// run the service until SIGINT or SIGTERM, drain.
package svcmain

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/prom"
)

// Runner is a service.
type Runner interface {
	Run(ctx context.Context) error
}

// Main runs the service that build makes. bind may register more flags on
// the command line before it is parsed (nil for none).
func Main(name string, bind func(*flag.FlagSet), build func(*nats.Conn, zerolog.Logger) Runner) {
	conn := natsx.DefaultConfig()
	conn.Name = "redblack-" + name
	conn.FromEnv(os.LookupEnv)
	conn.BindFlags(flag.CommandLine)
	level := flag.String("log-level", "info", "debug, info, warn or error")
	metricsAddr := flag.String("metrics", "", "address to serve the service's Prometheus metrics on (/metrics); empty for none")
	if bind != nil {
		bind(flag.CommandLine)
	}
	flag.Parse()
	log := logging.New(os.Stderr, name, *level)
	nc, err := natsx.Connect(conn)
	if err != nil {
		log.Fatal().Err(err).Send()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	svc := build(nc, log)
	if *metricsAddr != "" {
		var exporters []prom.Exporter
		if e, ok := svc.(prom.Exporter); ok {
			exporters = append(exporters, e)
		}
		reg, err := prom.NewRegistry(exporters...)
		if err != nil {
			log.Fatal().Err(err).Send()
		}
		srv, addr, err := prom.Serve(*metricsAddr, reg, nil)
		if err != nil {
			log.Fatal().Err(err).Send()
		}
		defer srv.Close()
		log.Info().Str("metrics", "http://"+addr.String()+"/metrics").Msg("serving metrics")
	}
	err = svc.Run(ctx)
	stop()
	_ = nc.Drain()
	if err != nil {
		log.Fatal().Err(err).Send()
	}
}

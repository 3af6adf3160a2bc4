// Command router runs the router service against a NATS server.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
)

func main() {
	conn := natsx.DefaultConfig()
	conn.Name = "redblack-router"
	conn.FromEnv(os.LookupEnv)
	conn.BindFlags(flag.CommandLine)
	level := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()
	log := logging.New(os.Stderr, "router", *level)
	nc, err := natsx.Connect(conn)
	if err != nil {
		log.Fatal().Err(err).Send()
	}
	defer nc.Drain()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := router.New(router.DefaultConfig(), nc, log).Run(ctx); err != nil {
		log.Fatal().Err(err).Send()
	}
}

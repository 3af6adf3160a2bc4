// Command provisioner runs the provisioner against a NATS server
// (--server), with the local provider's files in --data.
package main

import (
	"flag"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/provisioner"
	"github.com/redblack/redblack/shared/svcmain"
)

func main() {
	cfg := provisioner.DefaultConfig()
	svcmain.Main("provisioner", func(fs *flag.FlagSet) {
		fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory for the local provider's records and instance logs")
		fs.BoolVar(&cfg.StopInstancesOnExit, "stop-instances", false, "stop every instance on exit (default: leave them for the next start to re-adopt)")
	}, func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
		return provisioner.New(cfg, nc, log)
	})
}

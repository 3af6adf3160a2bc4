package provisioner

import (
	"flag"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/svcmain"
)

// Program is the provisioner as a program of its own: the binary's main
// and `redblack run provisioner`, with the local provider's files in --data.
func Program() svcmain.Program {
	cfg := DefaultConfig()
	return svcmain.Program{Name: "provisioner",
		Bind: func(fs *flag.FlagSet) {
			fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory for the local provider's records and instance logs")
			fs.BoolVar(&cfg.StopInstancesOnExit, "stop-instances", false, "stop every instance on exit (default: leave them for the next start to re-adopt)")
		},
		Build: func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner { return New(cfg, nc, log) },
	}
}

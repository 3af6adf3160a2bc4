package router

import (
	"flag"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/svcmain"
)

// Program is the router as a program of its own: the binary's main and
// `redblack run router`. It serves HTTP on --http and its metrics on
// --admin.
func Program() svcmain.Program {
	cfg := DefaultConfig()
	return svcmain.Program{Name: "router",
		Bind: func(fs *flag.FlagSet) {
			fs.StringVar(&cfg.HTTP, "http", cfg.HTTP, "address of the HTTP data plane")
			fs.StringVar(&cfg.Admin, "admin", "127.0.0.1:9180", "address of the admin port (/metrics); empty for none")
			fs.DurationVar(&cfg.MetricsInterval, "metrics-interval", cfg.MetricsInterval, "how often traffic samples are published (≥ 100ms)")
		},
		Build: func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner { return New(cfg, nc, log) },
	}
}

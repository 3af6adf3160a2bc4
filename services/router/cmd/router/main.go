// Command router runs the router against a NATS server (--server), serving
// HTTP on --http and Prometheus metrics on --admin.
package main

import (
	"flag"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/shared/svcmain"
)

func main() {
	cfg := router.DefaultConfig()
	svcmain.Main("router", func(fs *flag.FlagSet) {
		fs.StringVar(&cfg.HTTP, "http", cfg.HTTP, "address of the HTTP data plane")
		fs.StringVar(&cfg.Admin, "admin", "127.0.0.1:9180", "address of the admin port (/metrics); empty for none")
		fs.DurationVar(&cfg.MetricsInterval, "metrics-interval", cfg.MetricsInterval, "how often traffic samples are published (≥ 100ms)")
	}, func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
		return router.New(cfg, nc, log)
	})
}

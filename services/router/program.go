package router

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/router/proxy"
	"github.com/redblack/redblack/shared/alb"
	"github.com/redblack/redblack/shared/prom"
	"github.com/redblack/redblack/shared/svcmain"
)

// Program is the router as a program of its own: the binary's main and
// `redblack run router`. It serves HTTP/1.1 and h2c on --http, TLS with
// HTTP/2 on --https, and its metrics on --admin; with --aws-listener it
// moves the traffic at the ALB too.
func Program() svcmain.Program {
	cfg := DefaultConfig()
	var edge alb.Flags
	var af AWSFlags
	return svcmain.Program{Name: "router",
		Bind: func(fs *flag.FlagSet) {
			edge.Bind(fs)
			af.Bind(fs)
			fs.StringVar(&cfg.HTTP, "http", cfg.HTTP, "address of the HTTP data plane")
			fs.StringVar(&cfg.HTTPS, "https", "", "TLS address of the data plane (HTTP/2 by ALPN, and HTTP/1.1); needs --https-cert and --https-key")
			fs.StringVar(&cfg.TLSCert, "https-cert", "", "the TLS certificate of --https (PEM file)")
			fs.StringVar(&cfg.TLSKey, "https-key", "", "the TLS key of --https (PEM file)")
			fs.BoolVar(&cfg.ReusePort, "reuse-port", false, "open the data plane's ports with SO_REUSEPORT, so that several routers serve one address")
			fs.StringVar(&cfg.Admin, "admin", prom.DefaultAdmin, "address of the admin port (/metrics); empty for none")
			fs.IntVar(&cfg.Proxy.MaxConnsPerClient, "max-conns-per-client", proxy.DefaultMaxConnsPerClient, "connections one client address may hold open (an IPv6 client's /64); -1 for no cap, behind a proxy that is every client's address")
			fs.DurationVar(&cfg.MetricsInterval, "metrics-interval", cfg.MetricsInterval, "how often traffic samples are published (≥ 100ms)")
		},
		Build: func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := af.Apply(ctx, &cfg, &edge); err != nil {
				return svcmain.Failed(fmt.Errorf("router: %w", err))
			}
			return New(cfg, nc, log)
		},
	}
}

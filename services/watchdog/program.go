package watchdog

import (
	"flag"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/svcmain"
)

// Program is the watchdog: bakes, deadlines and dead letters as a program of its own: the binary's main and
// `redblack run watchdog`.
func Program() svcmain.Program {
	cfg := DefaultConfig()
	return svcmain.Program{Name: "watchdog",
		Bind: func(fs *flag.FlagSet) {
			fs.DurationVar(&cfg.LatencySlack, "latency-slack", cfg.LatencySlack, "a p99 increase below this never fails a bake or the watch after completion")
			fs.Var(&cfg.ProviderEgress, "provider-egress", "CIDR prefixes and addresses the analysis templates' providers may be read from, comma-separated (default: any but link-local)")
		},
		Build: func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
			return New(cfg, nc, log)
		}}
}

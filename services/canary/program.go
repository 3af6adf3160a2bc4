package canary

import (
	"flag"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/svcmain"
)

// Program is the canary service: release intake, the team API and the canary judge as a program of its own: the binary's main and
// `redblack run canary`.
func Program() svcmain.Program {
	cfg := DefaultConfig()
	return svcmain.Program{Name: "canary",
		Bind: func(fs *flag.FlagSet) {
			fs.Var(&cfg.ProviderEgress, "provider-egress", "CIDR prefixes and addresses the analysis templates' providers may be read from, comma-separated (default: any but link-local)")
		},
		Build: func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
			return New(cfg, nc, log)
		}}
}

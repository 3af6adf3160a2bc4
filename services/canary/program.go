package canary

import (
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/svcmain"
)

// Program is the canary service: release intake, the team API and the canary judge as a program of its own: the binary's main and
// `redblack run canary`.
func Program() svcmain.Program {
	return svcmain.Program{Name: "canary", Build: func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
		return New(DefaultConfig(), nc, log)
	}}
}

package chaos

import (
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/svcmain"
)

// Program is Chaos Monkey as a program of its own: the binary's main and
// `redblack run chaos`.
func Program() svcmain.Program {
	return svcmain.Program{Name: "chaos", Build: func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
		return New(DefaultConfig(), nc, log)
	}}
}

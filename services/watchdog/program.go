package watchdog

import (
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/svcmain"
)

// Program is the watchdog: bakes, deadlines and dead letters as a program of its own: the binary's main and
// `redblack run watchdog`.
func Program() svcmain.Program {
	return svcmain.Program{Name: "watchdog", Build: func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
		return New(DefaultConfig(), nc, log)
	}}
}

// Command canary runs the canary service against a NATS server (--server).
package main

import (
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/canary"
	"github.com/redblack/redblack/shared/svcmain"
)

func main() {
	svcmain.Main("canary", nil, func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
		return canary.New(canary.DefaultConfig(), nc, log)
	})
}

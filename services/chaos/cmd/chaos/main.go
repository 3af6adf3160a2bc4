// Command chaos runs the chaos service against a NATS server (--server).
package main

import (
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/chaos"
	"github.com/redblack/redblack/shared/svcmain"
)

func main() {
	svcmain.Main("chaos", nil, func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
		return chaos.New(chaos.DefaultConfig(), nc, log)
	})
}

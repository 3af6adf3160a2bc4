// Command watchdog runs the watchdog service against a NATS server (--server).
package main

import (
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/watchdog"
	"github.com/redblack/redblack/shared/svcmain"
)

func main() {
	svcmain.Main("watchdog", nil, func(nc *nats.Conn, log zerolog.Logger) svcmain.Runner {
		return watchdog.New(watchdog.DefaultConfig(), nc, log)
	})
}

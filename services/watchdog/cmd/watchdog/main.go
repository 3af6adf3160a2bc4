// Command watchdog runs the watchdog service against a NATS server (--server).
package main

import (
	"github.com/redblack/redblack/services/watchdog"
	"github.com/redblack/redblack/shared/svcmain"
)

func main() { svcmain.Main(watchdog.Program()) }

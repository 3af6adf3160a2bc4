// Command canary runs the canary service against a NATS server (--server).
package main

import (
	"github.com/redblack/redblack/services/canary"
	"github.com/redblack/redblack/shared/svcmain"
)

func main() { svcmain.Main(canary.Program()) }

// Command chaos runs the chaos service against a NATS server (--server).
package main

import (
	"github.com/redblack/redblack/services/chaos"
	"github.com/redblack/redblack/shared/svcmain"
)

func main() { svcmain.Main(chaos.Program()) }

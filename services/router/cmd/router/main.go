// Command router runs the router against a NATS server (--server), serving
// HTTP on --http and Prometheus metrics on --admin.
package main

import (
	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/shared/svcmain"
)

func main() { svcmain.Main(router.Program()) }

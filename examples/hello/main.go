// Command hello is the demo application redblack releases. It listens on
// $PORT (or --listen), answers with its version and serves /healthz; its
// failure modes are set by flags. The redblack binary carries the same
// program (`redblack example hello`), so the demo needs no Go toolchain.
package main

import (
	"os"

	"github.com/redblack/redblack/examples/hello/app"
)

func main() { os.Exit(app.Main(os.Args[1:], os.Stderr)) }

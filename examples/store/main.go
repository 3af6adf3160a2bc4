// Command store is the example stateful service (package server): a small
// HTTP key-value store in $REDBLACK_VOLUME, released by rolling.
package main

import (
	"os"

	"github.com/redblack/redblack/examples/store/server"
)

func main() { os.Exit(server.Main(os.Args[1:], os.Stderr)) }

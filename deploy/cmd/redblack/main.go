// Command redblack runs the mesh on one machine (`redblack up`, `redblack
// demo`) and drives it (`service`, `release`, `events`, `status`, `bench`).
package main

import (
	"os"

	"github.com/redblack/redblack/deploy/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }

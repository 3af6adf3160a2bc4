// Command redblack runs the mesh on one machine (`redblack up`, `redblack
// demo`) and drives it (`service`, `release`, `events`, `status`, `bench`).
// Started under the name "hello" (the demo's link to it), it is the demo's
// hello application.
package main

import (
	"os"
	"path/filepath"

	"github.com/redblack/redblack/deploy/cli"
)

func main() {
	if filepath.Base(os.Args[0]) == cli.HelloName {
		os.Exit(cli.RunHello(os.Args[1:], os.Stderr))
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Command redblack runs the mesh on one machine (`redblack up`, `redblack
// demo`) and drives it (`service`, `release`, `events`, `status`, `bench`).
// Started under the name "hello" or "store" (the demo's links to it), it is
// the demo's hello application or its stateful store.
package main

import (
	"os"
	"path/filepath"

	"github.com/redblack/redblack/cli"
	"github.com/redblack/redblack/shared/procfs"
)

func main() {
	_ = procfs.CloseOnExecInherited() // children get only what is meant for them
	switch filepath.Base(os.Args[0]) {
	case cli.HelloName:
		os.Exit(cli.RunHello(os.Args[1:], os.Stderr))
	case cli.StoreName:
		os.Exit(cli.RunStore(os.Args[1:], os.Stderr))
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

package cli

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/bench"
	hello "github.com/redblack/redblack/examples/hello/app"
	store "github.com/redblack/redblack/examples/store/server"
)

// HelloName and StoreName are the program names under which the redblack
// binary runs the hello or the store example instead of its command line
// (a copy or link named so).
const (
	HelloName = bench.HelloName
	StoreName = bench.StoreName
)

// RunHello runs the hello example with args (the hello binary's flags) and
// returns its exit status.
func RunHello(args []string, stderr io.Writer) int { return hello.Main(args, stderr) }

// RunStore runs the store example (the stateful service) with args and
// returns its exit status.
func RunStore(args []string, stderr io.Writer) int { return store.Main(args, stderr) }

// exampleCmd carries the demo's applications in the binary, so that the demo
// needs no Go toolchain and no checkout.
func (a *app) exampleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "example", Short: "Run an example application: hello (the demo's and the README walk-through's service) or store",
		Long: `The binary carries the example applications, so that a release needs no other
program: a spec's artifact.command may be [redblack, example, hello, --version,
"{version}"] (examples/hello/hello.yaml). hello answers on $PORT with its
version; --error-rate, --fail-after, --latency and the other flags of
examples/hello make a bad release of it on purpose.`}
	cmd.AddCommand(&cobra.Command{
		Use:                "hello [flags]",
		Short:              "The demo's hello application (the flags of examples/hello)",
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if code := RunHello(args, a.err); code != 0 {
				return exitCode{code: code}
			}
			return nil
		},
	}, &cobra.Command{
		Use:                "store [flags]",
		Short:              "The demo's stateful store (the flags of examples/store)",
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if code := RunStore(args, a.err); code != 0 {
				return exitCode{code: code}
			}
			return nil
		},
	})
	return cmd
}

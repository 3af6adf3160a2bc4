package cli

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"

	hello "github.com/redblack/redblack/examples/hello/app"
)

// HelloName is the program name under which the redblack binary runs the
// hello example instead of its command line (a copy or link named so).
const HelloName = "hello"

// RunHello runs the hello example with args (the hello binary's flags) and
// returns its exit status.
func RunHello(args []string, stderr io.Writer) int { return hello.Main(args, stderr) }

// exampleCmd carries the demo's applications in the binary, so that the demo
// needs no Go toolchain and no checkout.
func (a *app) exampleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "example", Short: "Run an example application the demo releases", Hidden: true}
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
	})
	return cmd
}

// helloPackage is the demo application.
const helloPackage = "github.com/redblack/redblack/examples/hello"

// buildHello puts the hello program into dir. The redblack binary carries
// it: dir/hello is a link to (or a copy of) the running binary, which runs
// hello when started under that name, so each demo or bench has its own
// path to count and kill its instances by. A test binary does not, so under
// `go test` it is built with the go tool.
func buildHello(dir string) (string, error) {
	hello := filepath.Join(dir, HelloName)
	if testing.Testing() {
		if out, err := exec.Command("go", "build", "-o", hello, helloPackage).CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s: %v\n%s", helloPackage, err, out)
		}
		return hello, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("hello: the running binary: %w", err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return "", fmt.Errorf("hello: the running binary: %w", err)
	}
	if err := os.Link(self, hello); err == nil {
		return hello, nil
	}
	if err := copyFile(self, hello); err != nil {
		return "", fmt.Errorf("hello: copy the running binary: %w", err)
	}
	return hello, nil
}

// copyFile copies an executable.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

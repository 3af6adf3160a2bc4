package bench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/redblack/redblack/shared/artifact"
)

// HelloName and StoreName are the program names under which the redblack
// binary runs the hello or the store example instead of its command line
// (a copy or link named so).
const (
	HelloName = "hello"
	StoreName = "store"
)

// BuildHello puts the hello program into dir (see buildExample).
func BuildHello(dir string) (string, error) {
	return buildExample(dir, HelloName, "github.com/redblack/redblack/examples/hello")
}

// BuildStore puts the store program into dir (see buildExample).
func BuildStore(dir string) (string, error) {
	return buildExample(dir, StoreName, "github.com/redblack/redblack/examples/store")
}

// buildExample puts an example program into dir as name. The redblack
// binary carries it: dir/name is a link to (or a copy of) the running
// binary, which runs the example when started under that name, so each
// demo or bench has its own path to count and kill its instances by. A
// test binary does not, so under `go test` pkg is built with the go tool.
func buildExample(dir, name, pkg string) (path string, err error) {
	path = filepath.Join(dir, name)
	defer func() {
		if err == nil {
			err = artifact.Share(path) // the instances' users run it
		}
	}()
	if testing.Testing() {
		if out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
		return path, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("%s: the running binary: %w", name, err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return "", fmt.Errorf("%s: the running binary: %w", name, err)
	}
	if err := os.Link(self, path); err == nil {
		return path, nil
	}
	if err := copyFile(self, path); err != nil {
		return "", fmt.Errorf("%s: copy the running binary: %w", name, err)
	}
	return path, nil
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

package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/artifact"
	"github.com/redblack/redblack/shared/testkit"
)

// TestDemoFromTheBinaryAlone copies the built binary into an empty
// directory and runs its demo there with a PATH that holds no Go toolchain
// and no checkout around it: the binary carries the hello application.
func TestDemoFromTheBinaryAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo (about 45 s)")
	}
	empty := t.TempDir()
	bin := filepath.Join(empty, "redblack")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/redblack").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Cleanup(func() { testkit.KillAll(bin) })
	// `hello` is a link to the binary in the demo's temp dir, under tmp:
	// whatever the demo leaves behind is killed by that prefix
	tmp := t.TempDir()
	t.Cleanup(func() { testkit.KillUnder(tmp) })
	// as root the demo's instances run as unprivileged users, who must
	// reach that link: the test's own temp dir above TMPDIR is 0700
	if err := artifact.Share(filepath.Join(tmp, "x")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo")
	cmd.Dir = empty
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + empty, "TMPDIR=" + tmp}
	for _, dir := range []string{"/usr/bin", "/bin"} {
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			t.Skipf("%s/go is inside the PATH the test gives the demo", dir)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"preparing examples/hello", "outcomes as expected"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 1 {
		t.Errorf("the demo left files in its working directory: %v", entries)
	}
}

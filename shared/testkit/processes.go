package testkit

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/redblack/redblack/shared/artifact"
)

// HelloPackage is the demo application the tests run as instances.
const HelloPackage = "github.com/redblack/redblack/examples/hello"

// StorePackage is the example stateful service (strategy rolling).
const StorePackage = "github.com/redblack/redblack/examples/store"

// BuildHello builds examples/hello into dir (the go tool must be on PATH and
// the working directory inside the workspace) and returns its path.
func BuildHello(dir string) (string, error) { return Build(dir, HelloPackage, "hello") }

// Build builds the package pkg into dir/name and returns its path, which
// the local provider's unprivileged instance users can run
// (artifact.Share).
func Build(dir, pkg, name string) (string, error) {
	p := filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", p, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("testkit: build %s: %v\n%s", name, err, out)
	}
	return p, artifact.Share(p)
}

// CountProcesses counts the live (not zombie) processes running the binary
// at path.
func CountProcesses(path string) int {
	n := 0
	for _, pid := range pidsOf(path) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] != 'Z' {
				n++
			}
		}
	}
	return n
}

// KillAll kills every process running the binary at path, so no test leaves
// one behind even when it fails.
func KillAll(path string) {
	for _, pid := range pidsOf(path) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// KillUnder kills every process running a binary from under dir (removed
// since or not).
func KillUnder(dir string) {
	for _, pid := range pids(func(exe string) bool { return strings.HasPrefix(exe, dir+"/") }) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Pids lists the processes running the program at path.
func Pids(path string) []int { return pidsOf(path) }

func pidsOf(path string) []int { return pids(func(exe string) bool { return exe == path }) }

func pids(match func(exe string) bool) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if exe, err := os.Readlink(d + "/exe"); err == nil && match(exe) {
			if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}

// MainWithHello is a TestMain for packages that run hello instances: it
// builds hello into a temp dir, stores its path in *hello, runs the tests,
// kills every hello process left (even after a failure), removes the dir
// and exits with the tests' status. A reaper (startReaper) does the same
// when the test binary dies without getting there: `go test -timeout`'s
// panic ends it at once, and the instances, in sessions of their own,
// would outlive it.
func MainWithHello(m interface{ Run() int }, hello *string) {
	if path := os.Getenv(reaperEnv); path != "" {
		reap(path)
		return
	}
	dir, err := os.MkdirTemp("", "redblack-hello-")
	if err == nil {
		*hello, err = BuildHello(dir)
	}
	if err == nil {
		err = startReaper(*hello)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	KillAll(*hello)
	os.RemoveAll(dir)
	os.Exit(code)
}

// reaperEnv names, in the reaper's environment, the binary whose
// processes it kills.
const reaperEnv = "REDBLACK_TEST_REAPER_FOR"

// reaperPipe is the write end of the reaper's stdin: only the test binary
// holds it (pipes are close-on-exec, so no instance inherits it), so the
// reaper reads EOF exactly when the test binary is gone, however it ends.
// Kept here so that no finalizer closes it while the tests run.
var reaperPipe *os.File

// startReaper starts the test binary again as the reaper of path's
// processes.
func startReaper(path string) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), reaperEnv+"="+path)
	cmd.Stdin = r
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("testkit: start the reaper: %w", err)
	}
	go cmd.Wait() //nolint:errcheck // reaped when it ends; nothing to report
	reaperPipe = w
	return nil
}

// reap waits for its test binary to end (EOF on stdin), then kills every
// process of path and removes path's directory.
func reap(path string) {
	_, _ = io.Copy(io.Discard, os.Stdin)
	KillAll(path)
	os.RemoveAll(filepath.Dir(path))
}

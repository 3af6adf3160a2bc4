package testkit

import (
	"fmt"
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
// and exits with the tests' status.
func MainWithHello(m interface{ Run() int }, hello *string) {
	dir, err := os.MkdirTemp("", "redblack-hello-")
	if err == nil {
		*hello, err = BuildHello(dir)
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

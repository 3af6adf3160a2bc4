package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/artifact"
	"github.com/redblack/redblack/shared/testkit"
)

// walkthroughBlock is the first sh block of the README's "Running it".
func walkthroughBlock(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Running it\n")
	if !ok {
		t.Fatal(`README: no "## Running it" section`)
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal(`README: "Running it" has no sh block`)
	}
	block, _, _ = strings.Cut(block, "```")
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// expectedExit is the exit status a README line's comment promises
// ("exits 1: …"), 0 without one.
func expectedExit(line string) int {
	if m := regexp.MustCompile(`#\s*exits (\d+)`).FindStringSubmatch(line); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// TestReadmeWalkthrough runs the README's "Running it" block as written, in
// one bash, from the checkout's root, and checks every line's exit status:
// 0, or the one its comment says. It runs in a network namespace of its
// own (so the block's default ports are its alone: root only), with a
// GOPATH of its own (the block's go install puts redblack there; the
// module cache is the machine's) and REDBLACK_DATA in a temp dir, so that
// it leaves nothing in the checkout. REDBLACK_UPDATE_README=1 keeps the
// transcript in docs/walkthrough.txt.
func TestReadmeWalkthrough(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the walk-through runs in a network namespace of its own (unshare -n)")
	}
	for _, tool := range []string{"unshare", "ip", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v (.ci/run installs util-linux and iproute2)", tool, err)
		}
	}
	lines := walkthroughBlock(t)
	if len(lines) < 8 {
		t.Fatalf("the README's walk-through has %d lines", len(lines))
	}
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	gopath, data := filepath.Join(tmp, "gopath"), filepath.Join(tmp, "data")
	bin := filepath.Join(gopath, "bin", "redblack")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	// the instances run the binary as their service's unprivileged user
	if err := artifact.Share(bin); err != nil {
		t.Fatal(err)
	}
	// up --background runs in a session of its own, the data plane and the
	// instances beside it: none outlives the test, even a failed one
	t.Cleanup(func() { testkit.KillAll(bin) })

	// each line, then its status on fd 3
	var script strings.Builder
	script.WriteString("ip link set lo up || exit 99\n")
	for i, l := range lines {
		fmt.Fprintf(&script, "%s\necho \"%d $?\" >&3\n", l, i)
	}
	rcs, err := os.CreateTemp(tmp, "rc")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-n", "bash", "-c", script.String())
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOPATH="+gopath, "GOMODCACHE="+strings.TrimSpace(string(modcache)), "GOBIN=", "REDBLACK_DATA="+data,
		"GOPROXY=off")
	cmd.ExtraFiles = []*os.File{rcs}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	runErr := cmd.Run()
	took := time.Since(start)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the load, if a line failed before its kill
	if os.Getenv("REDBLACK_UPDATE_README") != "" {
		if err := os.WriteFile("../docs/walkthrough.txt", out.Bytes(), 0o644); err != nil {
			t.Error(err)
		}
	}
	got := map[int]int{}
	rcb, _ := os.ReadFile(rcs.Name())
	sc := bufio.NewScanner(bytes.NewReader(rcb))
	for sc.Scan() {
		var i, code int
		if _, err := fmt.Sscanf(sc.Text(), "%d %d", &i, &code); err == nil {
			got[i] = code
		}
	}
	for i, l := range lines {
		code, ran := got[i]
		switch {
		case !ran:
			t.Errorf("line %d never finished: %s", i+1, l)
		case code != expectedExit(l):
			t.Errorf("line %d exited %d, want %d: %s", i+1, code, expectedExit(l), l)
		}
	}
	if t.Failed() || runErr != nil {
		t.Fatalf("the walk-through (%v, %s):\n%s", runErr, took.Round(time.Second), out.String())
	}
	t.Logf("the README's walk-through ran in %s (%d lines)", took.Round(time.Second), len(lines))
	// what a newcomer is promised along the way
	for _, want := range []string{"redblack ready ", "release.completed    hello-v002 serves v2", "release.canary.failed",
		"(hello v2, completed) requested by", "hello-v001  v1       active", " 0 failed; versions that answered: v1, v2, v3", "stopped in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the walk-through's output lacks %q", want)
		}
	}
	if took > 4*time.Minute {
		t.Errorf("the walk-through took %s; the README promises about a minute and a half", took.Round(time.Second))
	}
}

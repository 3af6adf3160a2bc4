package local

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/fleettest"
	"github.com/redblack/redblack/shared/artifact"
	"github.com/redblack/redblack/shared/events"
)

// probeBindEnv makes this test binary, started as an instance, try to
// bind the address it names with SO_REUSEPORT (joining a --reuse-port
// router's port) and exit 0 on success, 3 on failure.
const probeBindEnv = "REDBLACK_TEST_PROBE_BIND"

// reusePort listens with SO_REUSEPORT.
var reusePort = net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) }); err != nil {
		return err
	}
	return serr
}}

// probeBind is the test binary's life as that instance (see TestMain).
func probeBind(addr string) int {
	l, err := reusePort.Listen(context.Background(), "tcp", addr)
	if err != nil {
		fmt.Println("bind:", err)
		return 3
	}
	l.Close()
	return 0
}

// TestSandboxHoldsTheAttacks runs the attack and its neighbours
// as an instance: a script that copies the admin's creds into a directory
// anyone may write, reads another service's secret, kills a process of
// the provisioner's user (the router's stand-in), another service's
// instance and its own service's other instance, binds a privileged port
// and joins a SO_REUSEPORT port the provisioner's user holds. Each fails
// with a permission error (or finds no such process), nothing is copied,
// and every target lives on.
func TestSandboxHoldsTheAttacks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandbox needs root: only root can run an instance as another user")
	}
	data := t.TempDir()
	for path, content := range map[string]string{"creds/admin.creds": "ADMIN-SEED", "secrets/other/db": "pw-of-other"} {
		p := filepath.Join(data, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t)
	cfg.Dir = filepath.Join(data, "local")
	l, _ := open(t, cfg)
	ctx := context.Background()
	start := func(service, group string, argv ...string) fleet.Instance {
		t.Helper()
		s := groupSpec(group, 1)
		s.Service, s.Artifact = service, events.Artifact{Command: argv}
		if _, err := l.CreateGroup(ctx, s); err != nil {
			t.Fatal(err)
		}
		return fleettest.WaitUp(t, l, group, 1, 15*time.Second).Instances[0]
	}
	other := start("other", "other-v001", hello)
	sibling := start("sib", "sib-v001", hello)
	// the router's stand-in: a process of the provisioner's user
	router := exec.Command("sleep", "300")
	if err := router.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { router.Process.Kill(); router.Wait() })
	held, err := reusePort.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	low := 0
	for p := 1023; p > 900 && low == 0; p-- {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			low = p
		}
	}
	if low == 0 {
		t.Fatal("no free privileged port to try")
	}
	loot := t.TempDir()
	if err := os.Chmod(loot, 0o777); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "attack.sh")
	body := fmt.Sprintf(`#!/bin/sh
cp %[1]s/creds/admin.creds %[2]s/stolen.creds; echo "copy creds: $?"
cat %[1]s/secrets/other/db; echo "read secret: $?"
kill -9 %[3]d; echo "kill router: $?"
kill -9 %[4]d; echo "kill other: $?"
kill -9 %[5]d; echo "kill sibling: $?"
PORT=%[6]d %[7]s --version x; echo "bind privileged: $?"
%[8]s=%[9]s %[10]s; echo "join reuseport: $?"
exec %[7]s --version v2
`, data, loot, router.Process.Pid, other.PID, sibling.PID, low, hello, probeBindEnv, held.Addr(), self)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{script, self, loot + "/x"} {
		if err := artifact.Share(p); err != nil {
			t.Fatal(err)
		}
	}
	attacker := start("sib", "sib-v002", script)
	out, _ := os.ReadFile(l.LogFile("sib-v002", attacker.ID))
	t.Logf("the attack's output:\n%s", out)
	for _, want := range []string{"copy creds: 1", "read secret: 1", "kill router: 1", "kill other: 1", "kill sibling: 1", "join reuseport: 3"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the attack's output lacks %q", want)
		}
	}
	if strings.Contains(string(out), "bind privileged: 0") || !strings.Contains(string(out), "bind privileged:") {
		t.Error("a privileged port was bound, or the attempt never ended")
	}
	if strings.Contains(string(out), "pw-of-other") || !strings.Contains(strings.ToLower(string(out)), "permission denied") {
		t.Error("another service's secret was read, or no permission error")
	}
	if _, err := os.Stat(filepath.Join(loot, "stolen.creds")); err == nil {
		t.Error("the admin's creds were copied")
	}
	for name, pid := range map[string]int{"router": router.Process.Pid, "other": other.PID, "sibling": sibling.PID} {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Errorf("the %s (pid %d) was killed", name, pid)
		}
	}
	if st, err := os.Stat(fmt.Sprintf("/proc/%d", attacker.PID)); err != nil || st.Sys().(*syscall.Stat_t).Uid == 0 {
		t.Errorf("the attacker runs as root")
	}
}

// TestUnrunnableArtifactIsNamed: an artifact the instance's user cannot
// reach is not started, and the crash loop names the directory to fix.
func TestUnrunnableArtifactIsNamed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandbox needs root")
	}
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(private, "hello")
	if err := os.Link(hello, bin); err != nil {
		t.Fatal(err)
	}
	l, r := open(t, testConfig(t))
	s := groupSpec("hello-v001", 1)
	s.Artifact.Command = []string{bin}
	if _, err := l.CreateGroup(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	c := r.waitFor(t, fleet.CrashLoop, 1)
	if !strings.Contains(c.Reason, "could not start") || !strings.Contains(c.Reason, private+" is not searchable") {
		t.Fatalf("crash loop reason %q does not name %s", c.Reason, private)
	}
}

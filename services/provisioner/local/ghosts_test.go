package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestPortsAreHeldAfterExit: a port handed to an instance is not handed out
// again while it runs, nor for PortHold after it exited, even when the
// kernel offers it again at once; after the hold it is.
func TestPortsAreHeldAfterExit(t *testing.T) {
	offers := []int{4001, 4001, 4001, 4002, 4001}
	l := &Local{cfg: Config{PortHold: time.Hour}, ports: map[int]time.Time{}, free: func() (int, error) {
		p := offers[0]
		offers = offers[1:]
		return p, nil
	}}
	if p, _ := l.pickPort(); p != 4001 {
		t.Fatalf("first port %d", p)
	}
	// the instance runs: the kernel offers 4001 again, twice
	if p, _ := l.pickPort(); p != 4002 {
		t.Fatalf("second port %d, want 4002 (4001 is in use)", p)
	}
	l.releasePort(4001)
	l.cfg.PortHold = -time.Second
	l.releasePort(4002) // held until a second ago: free again
	l.free = func() (int, error) { return 4002, nil }
	if p, err := l.pickPort(); err != nil || p != 4002 {
		t.Fatalf("a port past its hold: %d, %v", p, err)
	}
	l.free = func() (int, error) { return 4001, nil }
	if p, err := l.pickPort(); err == nil {
		t.Fatalf("port %d handed out within its hold", p)
	}
}

// TestOrphansAreReaped: a process this provider started but never
// recorded (a crash between the start and the pid record) is killed when
// the provider opens its directory again; another process is left alone.
func TestOrphansAreReaped(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte("test-owner-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(owner string) *exec.Cmd {
		cmd := exec.Command("sleep", "300")
		cmd.Env = []string{OwnerEnv + "=" + owner}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		return cmd
	}
	orphan, stranger := start("test-owner-1"), start("someone-else")
	exited := make(chan struct{})
	go func() { _, _ = orphan.Process.Wait(); close(exited) }()
	l, err := Open(Config{Dir: dir, GracePeriod: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(true)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the unrecorded instance is still running")
	}
	if err := stranger.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("a process of another owner was killed: %v", err)
	}
}

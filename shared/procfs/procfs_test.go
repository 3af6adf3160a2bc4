package procfs_test

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/procfs"
)

// TreeCPU counts a process's children: a shell that only waits for a busy
// child of its own uses no CPU itself, its tree does.
func TestTreeCPUCountsDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", `sh -c 'while :; do :; done' & wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	_, start, err := procfs.Stat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		tree, err := procfs.TreeCPU(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		own, err := procfs.CPU(cmd.Process.Pid, start)
		if err != nil {
			t.Fatal(err)
		}
		if tree >= 300*time.Millisecond {
			if own > 100*time.Millisecond {
				t.Fatalf("the waiting shell itself used %s", own)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tree used %s in 20 s with a busy child", tree)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTreeCPUOfNoProcess(t *testing.T) {
	if _, err := procfs.TreeCPU(1 << 30); err == nil {
		t.Fatal("no error for a pid that does not exist")
	}
}

// TreeRSS sees memory as it is touched: 64 MiB written by this process
// raise its tree's resident size by at least 60 MiB.
func TestTreeRSSSeesTouchedMemory(t *testing.T) {
	before, err := procfs.TreeRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = 1
	}
	after, err := procfs.TreeRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after < before+60<<20 {
		t.Fatalf("resident %d MiB before, %d MiB after touching 64 MiB", before>>20, after>>20)
	}
	runtime.KeepAlive(b)
}

// TestListenerOf finds this test's own listener by its port, and nothing
// on a port no one listens on.
func TestListenerOf(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	l, ok := procfs.ListenerOf(port)
	if !ok || l.Pid != os.Getpid() || l.Command == "" {
		t.Fatalf("the listener of %d: %+v %v, want pid %d", port, l, ok, os.Getpid())
	}
	ln.Close()
	if l, ok := procfs.ListenerOf(port); ok {
		t.Fatalf("after the close, %d is still listened on by %v", port, l)
	}
}

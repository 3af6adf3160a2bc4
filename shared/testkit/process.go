package testkit

import (
	"os/exec"
	"testing"
)

// Process is a program a test runs until the test ends: killed and reaped
// in its cleanup, even when the test fails.
type Process struct {
	Cmd *exec.Cmd
	// Exited is closed once the process has ended; Err is then its Wait's.
	Exited chan struct{}
	Err    error
}

// StartProcess starts name with args, its stdout and stderr into out.
func StartProcess(t testing.TB, out *SyncBuffer, name string, args ...string) *Process {
	t.Helper()
	p := &Process{Cmd: exec.Command(name, args...), Exited: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = out, out
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.Err = p.Cmd.Wait(); close(p.Exited) }()
	t.Cleanup(func() {
		p.Cmd.Process.Kill()
		<-p.Exited
	})
	return p
}

// Alive fails the test, saying what, if the process has ended.
func (p *Process) Alive(t testing.TB, what string, out *SyncBuffer) {
	t.Helper()
	select {
	case <-p.Exited:
		t.Fatalf("%s exited: %v\n%s", what, p.Err, out.String())
	default:
	}
}

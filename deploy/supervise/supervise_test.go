package supervise

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// TestKilledProcessIsRestarted: a SIGKILLed program runs again under a new
// pid, and Stop ends it.
func TestKilledProcessIsRestarted(t *testing.T) {
	s := New(zerolog.Nop())
	if err := s.Start(Spec{Name: "sleeper", Path: "/bin/sleep", Args: []string{"60"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background(), time.Second) })
	first := s.Pid("sleeper")
	if !alive(first) {
		t.Fatalf("pid %d not running", first)
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Restarts("sleeper") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("not restarted in 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	second := s.Pid("sleeper")
	if second == first || !alive(second) {
		t.Fatalf("after the kill: pid %d (was %d), alive %v", second, first, alive(second))
	}
	s.Stop(context.Background(), time.Second)
	if alive(second) {
		t.Fatalf("pid %d still running after Stop", second)
	}
}

// TestCrashLoopBacksOff: a program that exits at once is started again
// after 250 ms, 500 ms, 1 s…, not in a tight loop.
func TestCrashLoopBacksOff(t *testing.T) {
	s := New(zerolog.Nop())
	start := time.Now()
	if err := s.Start(Spec{Name: "crasher", Path: "/bin/sh", Args: []string{"-c", "exit 3"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background(), time.Second) })
	for s.Restarts("crasher") < 3 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d restarts in 10 s", s.Restarts("crasher"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(start); took < FirstBackoff*7 { // 250 + 500 + 1000 ms
		t.Fatalf("3 restarts in %s: no back-off", took)
	}
}

package supervise

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/procfs"
)

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

// awaitRestart fails the test unless the program is started again within
// 5 s.
func awaitRestart(t *testing.T, s *Supervisor, name string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.Restarts(name) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s not restarted in 5 s", name)
		}
	}
}

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
	awaitRestart(t, s, "sleeper")
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

// TestStateProgramIsAdopted: a program with a state file outlives its
// supervisor's Leave; the next supervisor adopts that very run (same pid),
// restarts it when it dies, and Stop ends it and removes the file. A
// supervisor given other arguments stops the old run and starts its own.
func TestStateProgramIsAdopted(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{Name: "plane", Path: "/bin/sleep", Args: []string{"60"}, State: filepath.Join(dir, "plane.json"), Log: filepath.Join(dir, "plane.log")}
	first := New(zerolog.Nop())
	if err := first.Start(spec); err != nil {
		t.Fatal(err)
	}
	pid := first.Pid("plane")
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if first.Adopted("plane") {
		t.Fatal("a run it started is reported adopted")
	}
	first.Leave(context.Background(), time.Second)
	if !alive(pid) {
		t.Fatalf("pid %d ended with its supervisor", pid)
	}

	second := New(zerolog.Nop())
	if err := second.Start(spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Stop(context.Background(), time.Second) })
	if got := second.Pid("plane"); got != pid || !second.Adopted("plane") {
		t.Fatalf("pid %d adopted %v, want the left run %d adopted", got, second.Adopted("plane"), pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	awaitRestart(t, second, "plane")
	restarted := second.Pid("plane")
	if restarted == pid || !alive(restarted) || second.Adopted("plane") {
		t.Fatalf("after the kill: pid %d (was %d), alive %v, adopted %v", restarted, pid, alive(restarted), second.Adopted("plane"))
	}
	second.Leave(context.Background(), time.Second)

	// other arguments: the old run is not the program asked for
	other := spec
	other.Args = []string{"61"}
	third := New(zerolog.Nop())
	if err := third.Start(other); err != nil {
		t.Fatal(err)
	}
	if third.Adopted("plane") || third.Pid("plane") == restarted {
		t.Fatalf("a run of other arguments was adopted")
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(restarted) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(restarted) {
		t.Fatalf("the run of other arguments (pid %d) still runs", restarted)
	}
	last := third.Pid("plane")
	third.Stop(context.Background(), time.Second)
	if alive(last) {
		t.Fatalf("pid %d still running after Stop", last)
	}
	if _, err := os.Stat(spec.State); !os.IsNotExist(err) {
		t.Fatalf("the state file is left after Stop: %v", err)
	}
}

// TestStateOfAnotherProgramIsIgnored: a state file naming a live process
// of another program (hostile or stale) neither adopts it nor signals it.
func TestStateOfAnotherProgramIsIgnored(t *testing.T) {
	dir := t.TempDir()
	other := New(zerolog.Nop())
	if err := other.Start(Spec{Name: "bystander", Path: "/bin/sleep", Args: []string{"60"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Stop(context.Background(), time.Second) })
	victim := other.Pid("bystander")
	_, ticks, err := procfs.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "plane", Path: "/bin/sh", Args: []string{"-c", "sleep 60"}, State: filepath.Join(dir, "plane.json"), Log: filepath.Join(dir, "plane.log")}
	// the file says the victim runs /bin/sh with other arguments
	if err := writeState(spec.State, state{Pid: victim, StartTicks: ticks, Path: "/bin/sh", Args: []string{"other"}}); err != nil {
		t.Fatal(err)
	}
	s := New(zerolog.Nop())
	if err := s.Start(spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background(), time.Second) })
	if s.Adopted("plane") || s.Pid("plane") == victim {
		t.Fatal("adopted a process of another program")
	}
	// Start stops a run it will not adopt before it returns: the victim
	// would be gone by now
	if !procfs.Alive(victim, ticks) {
		t.Fatal("the process the state file named was signalled")
	}
}

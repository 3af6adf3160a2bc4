// Package supervise runs programs as child processes and keeps them
// running: a process that exits while it is supervised is logged (its
// status and how long it ran) and started again after a back-off that
// doubles from 250 ms to 10 s, and starts over once a run has lasted 30 s.
// `redblack up --nodes` supervises its NATS nodes and its services with it,
// and `redblack up` its data plane.
//
// A program with a state file (Spec.State) outlives its supervisor: a
// SIGKILL of the supervisor leaves it running, and the next supervisor
// given the same Spec adopts it (same pid, start time, path and args)
// instead of starting another. Adopted or not, it is restarted when it
// dies.
package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/procfs"
)

// Back-off of restarts.
const (
	FirstBackoff = 250 * time.Millisecond
	MaxBackoff   = 10 * time.Second
	// Stable is how long a run must last for the back-off to start over.
	Stable = 30 * time.Second
)

// Spec is one program.
type Spec struct {
	Name string
	Path string
	Args []string
	// Env is the whole environment (nil: this process's).
	Env []string
	// Out receives the program's stdout and stderr (nil: discarded).
	Out io.Writer
	// State, when set, is the file that lets the program outlive the
	// supervisor (see the package doc). Its output then goes to the file
	// Log only: a pipe to this process would break when it dies.
	State string
	// Log is the file a State program's output is appended to.
	Log string
}

// state is what a State file holds: the run to adopt, and what it runs.
type state struct {
	Pid        int      `json:"pid"`
	StartTicks uint64   `json:"start_ticks"`
	Path       string   `json:"path"`
	Args       []string `json:"args"`
}

// Supervisor keeps its programs running until Stop.
type Supervisor struct {
	log zerolog.Logger

	mu    sync.Mutex
	procs map[string]*proc
	order []string
	wg    sync.WaitGroup
	stop  chan struct{}
}

type proc struct {
	spec     Spec
	pid      int
	wait     func() error // waits for the current run to end
	restarts int
	adopted  bool          // the current run was started by an earlier supervisor
	exited   chan struct{} // closed when the current run ends
}

// New returns an empty supervisor.
func New(log zerolog.Logger) *Supervisor {
	return &Supervisor{log: log, procs: map[string]*proc{}, stop: make(chan struct{})}
}

// Start starts a program and supervises it. Its first start's error is
// returned; later ones are logged and retried.
func (s *Supervisor) Start(spec Spec) error {
	s.mu.Lock()
	if _, dup := s.procs[spec.Name]; dup {
		s.mu.Unlock()
		return fmt.Errorf("supervise: %s runs already", spec.Name)
	}
	p := &proc{spec: spec}
	s.procs[spec.Name] = p
	s.order = append(s.order, spec.Name)
	var err error
	if !s.adopt(p) {
		err = s.launch(p)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go s.watch(p)
	return nil
}

// launch starts one run of p; s.mu is held.
func (s *Supervisor) launch(p *proc) error {
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Env = p.spec.Env
	// its own process group: a signal to up's terminal is not the child's;
	// and it dies with the supervisor, as if in one process (a SIGKILLed up
	// leaves no node or service behind to be started twice; the instances
	// stay, for the next start to re-adopt)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = p.spec.Out, p.spec.Out
	if p.spec.State != "" {
		// it outlives the supervisor: no death signal, and its output
		// straight into a file it holds itself
		cmd.SysProcAttr.Pdeathsig = 0
		err := os.MkdirAll(filepath.Dir(p.spec.Log), 0o755)
		var out *os.File
		if err == nil {
			out, err = os.OpenFile(p.spec.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		}
		if err != nil {
			return fmt.Errorf("supervise: %s's log: %w", p.spec.Name, err)
		}
		defer out.Close() // the child has its own copy
		cmd.Stdout, cmd.Stderr = out, out
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("supervise: start %s: %w", p.spec.Name, err)
	}
	p.pid, p.wait, p.adopted, p.exited = cmd.Process.Pid, cmd.Wait, false, make(chan struct{})
	if p.spec.State != "" {
		_, ticks, err := procfs.Stat(p.pid)
		if err == nil {
			err = writeState(p.spec.State, state{Pid: p.pid, StartTicks: ticks, Path: p.spec.Path, Args: p.spec.Args})
		}
		if err != nil {
			// a run the next supervisor could not adopt would hold its
			// port against the one it starts: none at all
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("supervise: %s's state: %w", p.spec.Name, err)
		}
	}
	return nil
}

// adopt takes over the run p's state file names, if it is still that
// process running the same program; a run of another program (other path
// or args) is stopped. s.mu is held.
func (s *Supervisor) adopt(p *proc) bool {
	if p.spec.State == "" {
		return false
	}
	b, err := os.ReadFile(p.spec.State)
	if err != nil {
		return false
	}
	var st state
	if json.Unmarshal(b, &st) != nil || st.Pid <= 0 || !procfs.Alive(st.Pid, st.StartTicks) {
		return false
	}
	// the file is data: a pid in it is never signalled or adopted unless
	// that process runs the program the file says (a binary replaced on
	// disk since reads "PATH (deleted)")
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.Pid))
	want, werr := filepath.EvalSymlinks(st.Path)
	if err != nil || werr != nil || strings.TrimSuffix(exe, " (deleted)") != want {
		s.log.Warn().Str("process", p.spec.Name).Int("pid", st.Pid).Str("exe", exe).Msg("the state file names a process of another program: ignored")
		return false
	}
	if st.Path != p.spec.Path || !slices.Equal(st.Args, p.spec.Args) {
		s.log.Warn().Str("process", p.spec.Name).Int("pid", st.Pid).Strs("args", st.Args).Msg("a run of other arguments is left from before: stopping it")
		terminate(st.Pid, st.StartTicks, 10*time.Second)
		return false
	}
	pid, ticks := st.Pid, st.StartTicks
	p.pid, p.adopted, p.exited = pid, true, make(chan struct{})
	p.wait = func() error {
		// not a child of this process: its end is seen in /proc
		for procfs.Alive(pid, ticks) {
			time.Sleep(adoptedPoll)
		}
		return errAdoptedEnded
	}
	s.log.Info().Str("process", p.spec.Name).Int("pid", pid).Msg("adopted the run left by the previous supervisor")
	return true
}

// adoptedPoll is how often an adopted run is looked for in /proc.
const adoptedPoll = 50 * time.Millisecond

// errAdoptedEnded is an adopted run's end: its status went to its parent.
var errAdoptedEnded = errors.New("ended (adopted: its status is not known)")

// terminate stops pid if it still started at ticks: SIGTERM, then SIGKILL
// after grace.
func terminate(pid int, ticks uint64, grace time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(grace); procfs.Alive(pid, ticks); time.Sleep(adoptedPoll) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// writeState writes a state file whole: a crash mid-write leaves the old
// one or none.
func writeState(path string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// watch waits for each run of p to end and starts the next.
func (s *Supervisor) watch(p *proc) {
	defer s.wg.Done()
	backoff := FirstBackoff
	for {
		s.mu.Lock()
		wait, exited, pid := p.wait, p.exited, p.pid
		s.mu.Unlock()
		started := time.Now()
		err := wait()
		close(exited)
		select {
		case <-s.stop:
			return
		default:
		}
		ran := time.Since(started)
		if ran >= Stable {
			backoff = FirstBackoff
		}
		s.log.Error().Str("process", p.spec.Name).Int("pid", pid).Str("exit", exitStatus(err)).Dur("ran", ran).
			Dur("restart_in", backoff).Msg("process died: restarting it")
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, MaxBackoff)
		for {
			s.mu.Lock()
			err := s.launch(p)
			if err == nil {
				p.restarts++
				s.log.Warn().Str("process", p.spec.Name).Int("pid", p.pid).Int("restarts", p.restarts).Msg("process restarted")
			}
			s.mu.Unlock()
			if err == nil {
				break
			}
			s.log.Error().Err(err).Str("process", p.spec.Name).Msg("restart failed")
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, MaxBackoff)
		}
	}
}

func exitStatus(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Pid is the pid of the program's current run (0 if unknown).
func (s *Supervisor) Pid(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[name]; p != nil {
		return p.pid
	}
	return 0
}

// Restarts is how many times the program was started again.
func (s *Supervisor) Restarts(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[name]; p != nil {
		return p.restarts
	}
	return 0
}

// Adopted reports whether the program's current run was started by an
// earlier supervisor and adopted by this one.
func (s *Supervisor) Adopted(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[name]; p != nil {
		return p.adopted
	}
	return false
}

// Stop ends supervision and stops the programs in the reverse of their
// start order: SIGTERM, then SIGKILL for one still running after grace.
// A stopped program's state file is removed.
func (s *Supervisor) Stop(ctx context.Context, grace time.Duration) {
	s.end(ctx, grace, false)
}

// Leave ends supervision like Stop, but leaves the State programs
// running, for the next supervisor to adopt.
func (s *Supervisor) Leave(ctx context.Context, grace time.Duration) {
	s.end(ctx, grace, true)
}

func (s *Supervisor) end(ctx context.Context, grace time.Duration, leave bool) {
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		return
	default:
	}
	close(s.stop)
	order := append([]string(nil), s.order...)
	s.mu.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		s.mu.Lock()
		p := s.procs[order[i]]
		pid, exited := p.pid, p.exited
		s.mu.Unlock()
		if leave && p.spec.State != "" {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-exited:
		case <-t.C:
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		}
		t.Stop()
		if p.spec.State != "" {
			_ = os.Remove(p.spec.State)
		}
	}
	if !leave {
		s.wg.Wait()
	}
}

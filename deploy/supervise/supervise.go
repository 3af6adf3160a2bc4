// Package supervise runs programs as child processes and keeps them
// running: a process that exits while it is supervised is logged (its
// status and how long it ran) and started again after a back-off that
// doubles from 250 ms to 10 s, and starts over once a run has lasted 30 s.
// `redblack up --nodes` supervises its NATS nodes and its services with it.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
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
	cmd      *exec.Cmd
	pid      int
	restarts int
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
	err := s.launch(p)
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
	cmd.Stdout, cmd.Stderr = p.spec.Out, p.spec.Out
	// its own process group: a signal to up's terminal is not the child's;
	// and it dies with the supervisor, as if in one process (a SIGKILLed up
	// leaves no node or service behind to be started twice; the instances
	// stay, for the next start to re-adopt)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("supervise: start %s: %w", p.spec.Name, err)
	}
	p.cmd, p.pid, p.exited = cmd, cmd.Process.Pid, make(chan struct{})
	return nil
}

// watch waits for each run of p to end and starts the next.
func (s *Supervisor) watch(p *proc) {
	defer s.wg.Done()
	backoff := FirstBackoff
	for {
		s.mu.Lock()
		cmd, exited := p.cmd, p.exited
		s.mu.Unlock()
		started := time.Now()
		err := cmd.Wait()
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
		s.log.Error().Str("process", p.spec.Name).Int("pid", cmd.Process.Pid).Str("exit", exitStatus(err)).Dur("ran", ran).
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

// Stop ends supervision and stops the programs in the reverse of their
// start order: SIGTERM, then SIGKILL for one still running after grace.
func (s *Supervisor) Stop(ctx context.Context, grace time.Duration) {
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
		cmd, exited := p.cmd, p.exited
		s.mu.Unlock()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-exited:
		case <-t.C:
			_ = cmd.Process.Signal(os.Kill)
			<-exited
		case <-ctx.Done():
			_ = cmd.Process.Signal(os.Kill)
			<-exited
		}
		t.Stop()
	}
	s.wg.Wait()
}

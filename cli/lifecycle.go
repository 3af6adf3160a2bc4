package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// DefaultStopTimeout bounds up's shutdown after SIGINT or SIGTERM: past
// it, up exits anyway (a second signal ends it at once). What a stuck stop
// leaves behind, the next up with the same --data re-adopts or kills.
const DefaultStopTimeout = 30 * time.Second

// boundedStop runs stop and waits for it at most timeout, or until a
// second SIGINT or SIGTERM; either way it returns, so that up ends.
func (a *app) boundedStop(stop func() error, timeout time.Duration) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan error, 1)
	go func() { done <- stop() }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return exitCode{code: 3, msg: fmt.Sprintf("the shutdown did not finish within --stop-timeout %s: exiting; the next up with the same --data re-adopts or stops what is left", timeout)}
	case s := <-sig:
		return exitCode{code: 3, msg: fmt.Sprintf("%s again during the shutdown: exiting at once; the next up with the same --data re-adopts or stops what is left", s)}
	}
}

// UpLog is the file of the data directory where up --background writes.
const UpLog = "up.log"

// upBackground starts up again, without --background, in a session of
// its own with its output in <data>/up.log, and returns once it is ready
// (its ready line printed here), or fails with the log's last lines if it
// ends first or is not ready within wait.
func (a *app) upBackground(data string, args []string, wait time.Duration) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("--data %s: %w", data, err)
	}
	logPath := filepath.Join(data, UpLog)
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	from, _ := log.Seek(0, 2)
	var child []string
	for _, arg := range args {
		if arg == "--background" || strings.HasPrefix(arg, "--background=") {
			continue
		}
		child = append(child, arg)
	}
	cmd := exec.Command(self, child...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		if line := readyLine(logPath, from); line != "" {
			fmt.Fprintln(a.out, line)
			fmt.Fprintf(a.out, "redblack up runs in the background as pid %d, its log in %s; stop it with: redblack down\n", cmd.Process.Pid, logPath)
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("up ended before it was ready (%v):\n%s", err, tail(logPath, from, 20))
		case <-deadline.C:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return fmt.Errorf("up was not ready within %s; stopped it. Its log:\n%s", wait, tail(logPath, from, 20))
		case <-tick.C:
		}
	}
}

// readyLine is the first "redblack ready" line of the log past offset
// from, or "".
func readyLine(path string, from int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < from {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b[from:]))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "redblack ready ") {
			return sc.Text()
		}
	}
	return ""
}

// tail is the last n lines of the log past offset from.
func tail(path string, from int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < from {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b[from:]), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (a *app) downCmd() *cobra.Command {
	data := dataDir()
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "down [--data DIR]",
		Short: "Stop the redblack up that holds the data directory (SIGTERM, then SIGKILL past --timeout)",
		Long: `Stops the up that holds --data (env REDBLACK_DATA, default .redblack), in the
background or not: SIGTERM, then waits until it has let go of the directory.
up bounds its own shutdown (--stop-timeout); past --timeout it is killed. With
no up on the directory there is nothing to do, and down says so and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			pid, held, err := dataHolder(data)
			if err != nil {
				return err
			}
			if !held {
				fmt.Fprintf(a.out, "no redblack up runs on %s\n", data)
				return nil
			}
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				return fmt.Errorf("stop redblack up (pid %d): %w", pid, err)
			}
			fmt.Fprintf(a.out, "redblack up (pid %d): SIGTERM sent, waiting up to %s\n", pid, wait)
			if waitFree(data, wait) {
				fmt.Fprintf(a.out, "redblack up (pid %d) stopped in %s\n", pid, time.Since(start).Round(time.Millisecond))
				return nil
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
			if !waitFree(data, 5*time.Second) {
				return fmt.Errorf("redblack up (pid %d) still holds %s after SIGKILL", pid, data)
			}
			return exitCode{code: 1, msg: fmt.Sprintf("redblack up (pid %d) did not stop within %s: killed; the next up with the same --data re-adopts or stops what it left", pid, wait)}
		},
	}
	cmd.Flags().StringVar(&data, "data", data, "the data directory of the up to stop (env REDBLACK_DATA)")
	cmd.Flags().DurationVar(&wait, "timeout", DefaultStopTimeout+15*time.Second, "how long to wait for it to stop before SIGKILL")
	return cmd
}

// dataHolder reads the pid in <data>/up.lock and whether an up holds the
// lock now.
func dataHolder(data string) (pid int, held bool, err error) {
	path := filepath.Join(data, "up.lock")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0, false, nil
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		return 0, false, fmt.Errorf("%s: %w", path, err)
	}
	b, _ := os.ReadFile(path)
	pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, true, fmt.Errorf("%s is held, but names no pid (%q)", path, b)
	}
	return pid, true, nil
}

// waitFree waits until no up holds data, at most d.
func waitFree(data string, d time.Duration) bool {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(d)
	for {
		if _, held, err := dataHolder(data); err == nil && !held {
			return true
		}
		select {
		case <-deadline:
			return false
		case <-tick.C:
		}
	}
}

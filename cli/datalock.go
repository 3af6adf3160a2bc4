package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockData takes the data directory for this up: an exclusive lock
// (flock) on <data>/up.lock, which holds the pid of the up that has it. A
// second up on the same directory is refused at once, naming that pid: two
// would share one NATS store and one data plane, and damage both. The
// kernel drops the lock when the process ends, however it ends; the data
// plane, which outlives up, does not hold it (the file is close-on-exec).
func lockData(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--data %s: %w", dir, err)
	}
	path := filepath.Join(dir, "up.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--data %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "another process"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf("redblack up (pid %d)", pid)
			}
			return nil, dataInUse(dir, holder)
		}
		return nil, fmt.Errorf("--data %s: lock: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// dataInUse is the refusal of an up on a data directory another holds.
func dataInUse(dir, holder string) error {
	return fmt.Errorf("--data %s is in use by %s: stop it first (redblack down --data %s), or give this up another --data", dir, holder, dir)
}

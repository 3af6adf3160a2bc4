package procfs

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Listener is a process listening on a TCP port.
type Listener struct {
	Pid     int
	Command string // its comm (the program's name, at most 15 bytes)
}

// String is "pid 1234 (nginx)".
func (l Listener) String() string { return fmt.Sprintf("pid %d (%s)", l.Pid, l.Command) }

// ListenerOf finds the process that listens on TCP port (v4 or v6) in this
// network namespace: the socket's inode in /proc/net/tcp{,6}, then the
// process with a descriptor on it. ok is false when there is none, or it
// is not this user's to see (another user's descriptors are hidden unless
// root).
func ListenerOf(port int) (l Listener, ok bool) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, ino := range listeningInodes(f, port) {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return l, false
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return l, false
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] {
				comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
				return Listener{Pid: pid, Command: strings.TrimSpace(string(comm))}, true
			}
		}
	}
	return l, false
}

// listeningInodes are the inodes of the sockets listening on port in one
// of /proc/net/tcp's tables ("sl local_address rem_address st … inode").
func listeningInodes(path string, port int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
			continue
		}
		if strings.HasSuffix(fields[1], want) {
			out = append(out, fields[9])
		}
	}
	return out
}

// ExplainInUse makes an "address in use" error from listening on addr
// name the port and, when it can be found, the process holding it; other
// errors are returned as they are.
func ExplainInUse(addr string, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	_, p, _ := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(p)
	if perr != nil {
		return err
	}
	if l, ok := ListenerOf(port); ok {
		return fmt.Errorf("%s: address in use: port %d is held by %s", addr, port, l)
	}
	return fmt.Errorf("%s: address in use: port %d is held by a process this user cannot see", addr, port)
}

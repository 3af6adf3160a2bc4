package local

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procStat reads a process's state letter and start time (clock ticks
// since boot) from /proc/<pid>/stat.
func procStat(pid int) (state byte, startTicks uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// the command name (field 2) may hold spaces and parentheses: fields
	// are counted after its closing parenthesis
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("local: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("local: short /proc/%d/stat", pid)
	}
	startTicks, err = strconv.ParseUint(f[19], 10, 64) // field 22 overall
	return f[0][0], startTicks, err
}

// alive reports whether pid is a live (not zombie) process that started at
// startTicks: the same process, not a later one that reused the pid.
func alive(pid int, startTicks uint64) bool {
	state, ticks, err := procStat(pid)
	return err == nil && state != 'Z' && state != 'X' && ticks == startTicks
}

// killGroup signals the process group led by pid.
func killGroup(pid int, sig syscall.Signal) error { return syscall.Kill(-pid, sig) }

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

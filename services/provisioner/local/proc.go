package local

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// userHZ is the unit of /proc/<pid>/stat's CPU times (USER_HZ: 100 on
// Linux whatever the kernel's own tick rate).
const userHZ = 100

// procCPU is the CPU time (user and system) pid has used, if it is still
// the process that started at startTicks.
func procCPU(pid int, startTicks uint64) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("local: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("local: short /proc/%d/stat", pid)
	}
	if t, err := strconv.ParseUint(f[19], 10, 64); err != nil || t != startTicks {
		return 0, fmt.Errorf("local: pid %d is another process now", pid)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14 overall
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("local: /proc/%d/stat: CPU times", pid)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
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

// Package procfs reads what redblack needs of a process from Linux's
// /proc: its state and start time, which tell a live process from a later
// one that reused its pid, and its CPU time. The local provider's instances
// and up's supervised data plane are re-adopted across restarts by them.
package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// stat is /proc/<pid>/stat's fields after the command name (field 3 on).
func stat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// the command name (field 2) may hold spaces and parentheses: fields
	// are counted after its closing parenthesis
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("procfs: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return nil, fmt.Errorf("procfs: short /proc/%d/stat", pid)
	}
	return f, nil
}

// Stat reads a process's state letter and start time (clock ticks since
// boot) from /proc/<pid>/stat.
func Stat(pid int) (state byte, startTicks uint64, err error) {
	f, err := stat(pid)
	if err != nil {
		return 0, 0, err
	}
	startTicks, err = strconv.ParseUint(f[19], 10, 64) // field 22 overall
	return f[0][0], startTicks, err
}

// userHZ is the unit of /proc/<pid>/stat's CPU times (USER_HZ: 100 on
// Linux whatever the kernel's own tick rate).
const userHZ = 100

// CPU is the CPU time (user and system) pid has used, if it is still the
// process that started at startTicks.
func CPU(pid int, startTicks uint64) (time.Duration, error) {
	f, err := stat(pid)
	if err != nil {
		return 0, err
	}
	if t, err := strconv.ParseUint(f[19], 10, 64); err != nil || t != startTicks {
		return 0, fmt.Errorf("procfs: pid %d is another process now", pid)
	}
	ticks, err := cpuTicks(f)
	if err != nil {
		return 0, fmt.Errorf("procfs: /proc/%d/stat: CPU times", pid)
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// cpuTicks is a stat's user and system time, in USER_HZ ticks.
func cpuTicks(f []string) (uint64, error) {
	utime, err := strconv.ParseUint(f[11], 10, 64) // field 14 overall
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseUint(f[12], 10, 64) // field 15
	return utime + stime, err
}

// Alive reports whether pid is a live (not zombie) process that started at
// startTicks: the same process, not a later one that reused the pid.
func Alive(pid int, startTicks uint64) bool {
	state, ticks, err := Stat(pid)
	return err == nil && state != 'Z' && state != 'X' && ticks == startTicks
}

// TreeCPU is the CPU time (user and system) used by pid and by every
// process descended from it that is alive now: a server's master and its
// workers (nginx), or a process and its threads (their time is the
// process's).
func TreeCPU(pid int) (time.Duration, error) {
	procs, err := tree(pid)
	var sum uint64
	for _, f := range procs {
		if t, err := cpuTicks(f); err == nil {
			sum += t
		}
	}
	return time.Duration(sum) * time.Second / userHZ, err
}

// TreeRSS is the resident memory of pid and of every process descended
// from it that is alive now, in bytes.
func TreeRSS(pid int) (uint64, error) {
	procs, err := tree(pid)
	var pages uint64
	for p := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", p))
		if err != nil {
			continue // gone meanwhile
		}
		if f := strings.Fields(string(b)); len(f) > 1 {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			pages += n
		}
	}
	return pages * uint64(os.Getpagesize()), err
}

// tree is the stat fields of pid and of every process descended from it,
// by pid.
func tree(pid int) (map[int][]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	parent := map[int]int{}
	fields := map[int][]string{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := stat(p)
		if err != nil {
			continue // gone meanwhile
		}
		ppid, _ := strconv.Atoi(f[1]) // field 4 overall
		parent[p], fields[p] = ppid, f
	}
	if _, ok := fields[pid]; !ok {
		return nil, fmt.Errorf("procfs: no process %d", pid)
	}
	in := map[int][]string{}
	for p, f := range fields {
		for q := p; q > 1; q = parent[q] {
			if q == pid {
				in[p] = f
				break
			}
		}
	}
	return in, nil
}

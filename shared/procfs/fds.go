package procfs

import (
	"os"
	"strconv"
	"syscall"
)

// CloseOnExecInherited marks every file descriptor this process holds
// above stderr close-on-exec. Go opens its own files so already; what it
// does not mark are the descriptors a parent left open (a shell's lock, a
// socket), which every child would otherwise inherit and hold for as long
// as it runs. A child then gets stdin, stdout, stderr and what its
// exec.Cmd passes (ExtraFiles, set up anew by the exec). Call it first in
// main.
func CloseOnExecInherited() error {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range fds {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

// FDTargets lists what process pid's file descriptors point at (paths, or
// socket:[…] and the like), by descriptor.
func FDTargets(pid int) (map[int]string, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[int]string, len(fds))
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink(dir + "/" + e.Name()); err == nil {
			out[fd] = target
		}
	}
	return out, nil
}

package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/redblack/redblack/shared/artifact"
)

// Sandbox says how instances run. When the provisioner runs as root (the
// only user that can start a process as another), each instance runs:
//   - as its service's own unprivileged user (a uid from UIDBase up, one per
//     service, kept in <Dir>/uids.json; never root, never the
//     provisioner's), with no supplementary groups, so that it cannot read
//     what the provisioner keeps in the data directory (creds, secrets, the
//     NATS store: 0700 or 0600, root's), nor signal a process of another
//     user (the router, the data plane, other services' instances);
//   - in a PID namespace of its own, so that it cannot see or signal even
//     its own service's other instances;
//   - with rlimits: RLIMIT_NPROC (per service user) and no core files,
//     set by util-linux's prlimit as the instance's user before it runs
//     the artifact (without /usr/bin/prlimit, none);
//   - with its volume (a stateful slot) owned by its user and handed to it
//     open, as /proc/self/fd/3 in REDBLACK_VOLUME, so that it needs no
//     access to the directories above it.
//
// Its artifact must be executable by an unprivileged user: every directory
// above it searchable by others. A start that would fail on that is
// refused with the path to fix. On AWS an instance is a machine of its own,
// and on Kubernetes a pod: this sandbox is the local provider's.
type Sandbox struct {
	// Off runs instances as the provisioner's own user.
	Off bool
	// UIDBase is the first service user's uid and gid (default
	// DefaultUIDBase).
	UIDBase int
	// NProc bounds the processes of one service's user (default 4096).
	NProc uint64
}

// DefaultUIDBase is far above the users a distribution creates, and below
// the 2^31 some tools take as a limit.
const DefaultUIDBase = 1_900_000_000

func (s *Sandbox) defaults() {
	if s.UIDBase == 0 {
		s.UIDBase = DefaultUIDBase
	}
	if s.NProc == 0 {
		s.NProc = 4096
	}
}

// sandboxing reports whether instances run in the sandbox: it is on and
// the provisioner is root.
func (l *Local) sandboxing() bool { return !l.cfg.Sandbox.Off && os.Geteuid() == 0 }

// uids keeps each service's user, in a file so that a service keeps its
// uid (and its volumes' owner) across restarts.
type uids struct {
	mu   sync.Mutex
	path string
	base int
	m    map[string]int
}

// of returns service's uid, allocating the next one the first time.
func (u *uids) of(service string) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]int{}
		b, err := os.ReadFile(u.path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("local: %w", err)
		}
		if len(b) > 0 {
			if err := json.Unmarshal(b, &u.m); err != nil {
				return 0, fmt.Errorf("local: %s: %w", u.path, err)
			}
		}
	}
	if uid, ok := u.m[service]; ok {
		return uid, nil
	}
	next := u.base
	for _, uid := range u.m {
		next = max(next, uid+1)
	}
	u.m[service] = next
	if err := writeJSON(u.path, u.m); err != nil {
		delete(u.m, service)
		return 0, err
	}
	return next, nil
}

// prlimitPath is util-linux's prlimit (Debian: essential), which sets the
// rlimits of the instance's process as its own user before it executes
// the artifact: the provisioner may not set another user's limits without
// CAP_SYS_RESOURCE.
const prlimitPath = "/usr/bin/prlimit"

// sandboxed builds the command that runs argv in the sandbox as service's
// user: its credentials and namespace, its rlimits (through prlimit), and
// its volume (when not "") handed open and owned by it. It returns the
// volume's file, for the caller to close once the process has started.
func (l *Local) sandboxed(argv, env []string, service, volume string) (*exec.Cmd, *os.File, error) {
	uid, err := l.uids.of(service)
	if err != nil {
		return nil, nil, err
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, nil, fmt.Errorf("local: %w", err)
	}
	if err := artifact.RunnableBy(path, uid); err != nil {
		return nil, nil, fmt.Errorf("local: %w", err)
	}
	args := append([]string{path}, argv[1:]...)
	if _, err := os.Stat(prlimitPath); err == nil {
		args = append([]string{prlimitPath, "--nproc=" + strconv.FormatUint(l.cfg.Sandbox.NProc, 10), "--core=0", "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWPID,
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	if volume == "" {
		return cmd, nil, nil
	}
	if err := chownTree(volume, uid); err != nil {
		return nil, nil, fmt.Errorf("local: volume %s: %w", volume, err)
	}
	f, err := os.Open(volume)
	if err != nil {
		return nil, nil, fmt.Errorf("local: volume %s: %w", volume, err)
	}
	cmd.ExtraFiles = []*os.File{f} // fd 3
	for i, kv := range cmd.Env {
		if strings.HasPrefix(kv, VolumeEnv+"=") {
			cmd.Env[i] = VolumeEnv + "=/proc/self/fd/3"
		}
	}
	return cmd, f, nil
}

// chownTree gives dir and everything in it to uid, when dir is not its
// already (a volume made before the sandbox, or by root).
func chownTree(dir string, uid int) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) == uid && int(sys.Gid) == uid {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
}

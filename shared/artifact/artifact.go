// Package artifact answers what an unprivileged user needs of an
// artifact's path: the local provider runs each instance as its service's
// own user (services/provisioner/local's Sandbox), which must be able to
// reach and execute the artifact.
package artifact

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// RunnableBy checks that uid, unprivileged and in no group of the files'
// owners, can run path: the file is executable, and every directory above
// it searchable, by others (or by uid, owning it). The error names the
// first path that is not.
func RunnableBy(path string, uid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for p := abs; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("artifact %s: %w", path, err)
		}
		mode := st.Mode().Perm()
		sys, _ := st.Sys().(*syscall.Stat_t)
		if mode&0o001 == 0 && (sys == nil || int(sys.Uid) != uid || mode&0o100 == 0) {
			return fmt.Errorf("artifact %s: %s is not searchable (executable) by the instance's user %d: instances run unprivileged; chmod o+x it", path, p, uid)
		}
		if p == "/" {
			return nil
		}
	}
}

// Share makes the directories above path that lie under the temporary
// directory and belong to this process's user searchable by others (o+x;
// nothing is made readable), so that the instances' users can run an
// artifact built or linked there (a test's, a bench's or a demo's). Other
// directories are left as they are: RunnableBy names them.
func Share(path string) error {
	tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for d := filepath.Dir(abs); strings.HasPrefix(d, tmp); d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok || int(sys.Uid) != os.Geteuid() || st.Mode().Perm()&0o001 != 0 {
			continue
		}
		if err := os.Chmod(d, st.Mode().Perm()|0o001); err != nil {
			return err
		}
	}
	return nil
}

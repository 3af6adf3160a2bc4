package artifact

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A binary under a fresh temporary directory (0700) is not runnable by
// another user until Share makes the directories above it searchable;
// Share makes nothing readable, and leaves directories outside the
// temporary directory alone.
func TestShareMakesATempArtifactRunnable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ownership is checked against another uid; the sandbox is root's")
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(sub, "hello")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const other = 1_900_000_999
	if err := RunnableBy(bin, other); err == nil || !strings.Contains(err.Error(), "chmod o+x") {
		t.Fatalf("a binary under 0700 directories: %v", err)
	}
	if err := Share(bin); err != nil {
		t.Fatal(err)
	}
	if err := RunnableBy(bin, other); err != nil {
		t.Fatalf("after Share: %v", err)
	}
	for _, d := range []string{sub, filepath.Dir(sub), dir} {
		st, _ := os.Stat(d)
		if st.Mode().Perm() != 0o701 && d != dir {
			t.Errorf("%s: mode %o, want 0701 (searchable, not readable)", d, st.Mode().Perm())
		}
	}
	if err := os.Chmod(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := RunnableBy(bin, other); err == nil {
		t.Fatal("a binary others may not execute is runnable")
	}
}

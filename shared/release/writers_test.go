package release_test

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// kvWrite is a write call on a KV bucket.
	kvWrite = regexp.MustCompile(`\.(Put|PutString|Create|Update|Delete|Purge)\(`)
	// releasesKey is a key of the releases bucket, by its function or its
	// prefix spelled out.
	releasesKey = regexp.MustCompile(`\b(LockKey|CounterKey|RecordKey|PendingKey|HostKey|OwnerKey|LeaseKey)\(|"(lock|seq|release|pending|host|owner|lease)\.`)
	// storeKV is a write through a release.Store's (or Lease's) raw bucket.
	storeKV = regexp.MustCompile(`\.KV\.(Put|PutString|Create|Update|Delete|Purge)\(`)
)

// releasesWrite reports whether a line of Go writes the releases bucket
// other than through release.Store.
func releasesWrite(line string) bool {
	code, _, _ := strings.Cut(line, "//")
	return storeKV.MatchString(code) || kvWrite.MatchString(code) && releasesKey.MatchString(code)
}

// TestOnlyTheStoreWritesTheReleasesBucket: outside shared/release, no code
// of the repository (tests aside: they set up what they test) writes a key
// of the releases bucket itself; records, locks, counters and the
// provisioner's entries are all written through release.Store.
func TestOnlyTheStoreWritesTheReleasesBucket(t *testing.T) {
	// the check itself: the intake's own copies, as they were, are caught
	for _, old := range []string{
		`	_, err := in.releases.Create(ctx, release.LockKey(req.service), b)`,
		`		_, err = in.releases.Update(ctx, release.CounterKey(service), b, rev)`,
		`	rev, err := s.releases.KV.Put(ctx, pendingKey(group), b)`,
		`		if _, err := kv.Put(ctx, HostKey(host), b); err != nil && ctx.Err() == nil {`,
	} {
		if !releasesWrite(old) {
			t.Errorf("the check misses %q", old)
		}
	}
	if releasesWrite(`	rec, err := s.releases.Update(ctx, id, func(r *release.Record) error {`) {
		t.Error("the check flags a Store.Update")
	}

	root, self := "../..", filepath.Clean("shared/release")
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && rel != "." || rel == self || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		files++
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 1; sc.Scan(); n++ {
			if releasesWrite(sc.Text()) {
				t.Errorf("%s:%d writes the releases bucket itself; go through release.Store: %s", rel, n, strings.TrimSpace(sc.Text()))
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read only %d files from %s: the walk is broken", files, root)
	}
}

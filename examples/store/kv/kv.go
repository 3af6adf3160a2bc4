// Package kv is the example stateful service's store: keys and values kept
// in memory and in an append-only file on the instance's volume, each
// write fsynced before it is acknowledged. Every record carries the schema
// it was written in; a store reads the schemas up to its own and refuses,
// by name, a file that holds a newer one: what a roll-back of a schema
// change cannot undo.
package kv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// FileName is the append-only file in the volume.
const FileName = "store.log"

// record is one line of the file.
type record struct {
	Schema int    `json:"s"`
	Key    string `json:"k"`
	Value  string `json:"v"`
}

// ErrNewerSchema is Open's error for a file with records of a schema newer
// than the store's.
var ErrNewerSchema = errors.New("kv: the volume holds records of a newer schema")

// Store is an open store.
type Store struct {
	mu     sync.Mutex
	f      *os.File
	data   map[string]string
	schema int
	// Torn is whether the file ended in a partial record (a crash in the
	// middle of a write, never acknowledged), cut off when opened.
	Torn bool
}

// ErrInUse: another process holds the volume.
var ErrInUse = errors.New("volume in use")

// Open replays dir's file into memory and opens it for appends, writing
// records of schema. A last line without its newline is a write that was
// never acknowledged: it is cut off. The file is locked (flock): a second
// Open of the same volume, in any process, fails with ErrInUse.
func Open(dir string, schema int) (*Store, error) {
	if schema < 1 {
		return nil, fmt.Errorf("kv: schema %d: want ≥ 1", schema)
	}
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	// one process per volume: a second store on it (a slot's old
	// instance not yet gone) would interleave its appends with ours
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("kv: %s is in use by another process: %w", dir, ErrInUse)
	}
	s := &Store{f: f, data: map[string]string{}, schema: schema}
	good, err := s.replay()
	if err == nil && good >= 0 {
		err = s.cut(good)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// replay reads every whole record; it returns the offset to cut the file
// at (-1: nothing to cut).
func (s *Store) replay() (int64, error) {
	r := bufio.NewReader(s.f)
	var off int64
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(b) > 0 {
				s.Torn = true
				return off, nil
			}
			return -1, nil
		}
		if err != nil {
			return -1, fmt.Errorf("kv: %w", err)
		}
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			return -1, fmt.Errorf("kv: %s line %d: %w", FileName, line, err)
		}
		if rec.Schema > s.schema {
			return -1, fmt.Errorf("%w: line %d is schema %d, this version reads up to %d", ErrNewerSchema, line, rec.Schema, s.schema)
		}
		s.data[rec.Key] = rec.Value
		off += int64(len(b))
	}
}

// cut truncates a torn last record and syncs.
func (s *Store) cut(at int64) error {
	if err := s.f.Truncate(at); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	if _, err := s.f.Seek(at, io.SeekStart); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	return s.f.Sync()
}

// Put writes a record and returns once it is on disk (fsynced).
func (s *Store) Put(key, value string) error {
	b, err := json.Marshal(record{Schema: s.schema, Key: key, Value: value})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	s.data[key] = value
	return nil
}

// Get returns a key's value.
func (s *Store) Get(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	return v, ok
}

// Len is the number of keys.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}

// Close closes the file.
func (s *Store) Close() error { return s.f.Close() }

package release

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/kv"
	"github.com/redblack/redblack/shared/natsx"
)

// Store reads and writes the releases bucket. Every write is a
// compare-and-set on the revision read.
type Store struct {
	KV jetstream.KeyValue
}

// ErrNotFound: no record, lock or counter under that key.
var ErrNotFound = errors.New("not found")

// Get reads a release record and its revision.
func (s Store) Get(ctx context.Context, id string) (Record, uint64, error) {
	var r Record
	e, err := s.KV.Get(ctx, RecordKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, 0, fmt.Errorf("release %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, 0, fmt.Errorf("release: get %s: %w", id, err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, 0, fmt.Errorf("release: record %s is corrupt: %w", id, err)
	}
	return r, e.Revision(), nil
}

// Update applies change to the record with compare-and-set, re-reading and
// re-deciding on a conflict. If change returns an error the record is left
// as it is and the error returned (ErrStale for a step that no longer
// applies).
func (s Store) Update(ctx context.Context, id string, change func(*Record) error) (Record, error) {
	r, _, err := kv.Update(ctx, s.KV, RecordKey(id), func(r *Record, exists bool) error {
		if !exists {
			return fmt.Errorf("release %s: %w", id, ErrNotFound)
		}
		return change(r)
	})
	return r, err
}

// Lock reads the service's lock; ErrNotFound when no release is in flight.
func (s Store) Lock(ctx context.Context, service string) (Lock, uint64, error) {
	var l Lock
	e, err := s.KV.Get(ctx, LockKey(service))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return l, 0, fmt.Errorf("lock of %s: %w", service, ErrNotFound)
	}
	if err != nil {
		return l, 0, fmt.Errorf("release: lock of %s: %w", service, err)
	}
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return l, 0, fmt.Errorf("release: lock of %s is corrupt: %w", service, err)
	}
	return l, e.Revision(), nil
}

// TakeLock takes the service's lock for release id (a rollback after
// completion: no release may start on the group being destroyed). Held by
// id already, it is kept; held by another release, ErrStale.
func (s Store) TakeLock(ctx context.Context, service, id, group string) error {
	b, _ := json.Marshal(Lock{Release: id, Group: group, Since: time.Now().UTC()})
	_, err := s.KV.Create(ctx, LockKey(service), b)
	if err == nil || !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	l, _, err := s.Lock(ctx, service)
	if errors.Is(err, ErrNotFound) {
		return s.TakeLock(ctx, service, id, group) // freed meanwhile
	}
	if err != nil {
		return err
	}
	if l.Release != id {
		return fmt.Errorf("%w: release %s of %s is in flight: roll that one back", ErrStale, l.Release, service)
	}
	return nil
}

// Unlock releases the service's lock if release id holds it. Releasing a
// lock that is free, or held by another release, does nothing.
func (s Store) Unlock(ctx context.Context, service, id string) error {
	l, rev, err := s.Lock(ctx, service)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Release != id {
		return nil
	}
	err = s.KV.Delete(ctx, LockKey(service), jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("release: unlock %s: %w", service, err)
	}
	return nil
}

// Counter reads the service's counter (zero before its first release).
func (s Store) Counter(ctx context.Context, service string) (Counter, uint64, error) {
	var c Counter
	e, err := s.KV.Get(ctx, CounterKey(service))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, 0, nil
	}
	if err != nil {
		return c, 0, fmt.Errorf("release: counter of %s: %w", service, err)
	}
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return c, 0, fmt.Errorf("release: counter of %s is corrupt: %w", service, err)
	}
	return c, e.Revision(), nil
}

// List returns every release record whose phase passes keep (nil: all).
func (s Store) List(ctx context.Context, keep func(Record) bool) ([]Record, error) {
	keys, err := natsx.Keys(ctx, s.KV, RecordKey("*"))
	if err != nil {
		return nil, fmt.Errorf("release: list: %w", err)
	}
	var out []Record
	for _, k := range keys {
		r, _, err := s.Get(ctx, strings.TrimPrefix(k, RecordKey("")))
		if natsx.Transient(err) {
			return nil, fmt.Errorf("release: list: %w", err) // never a shorter list
		}
		if err != nil {
			continue // deleted between list and get, or unreadable
		}
		if keep == nil || keep(r) {
			out = append(out, r)
		}
	}
	return out, nil
}

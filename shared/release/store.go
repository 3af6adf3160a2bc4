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

// ErrCorrupt: the key holds a value that does not decode (the counter's
// is also natsx.Permanent: Accept cannot go on past it).
var ErrCorrupt = errors.New("corrupt")

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
		return r, 0, fmt.Errorf("release: record %s is %w: %w", id, ErrCorrupt, err)
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
		return l, 0, fmt.Errorf("release: lock of %s is %w: %w", service, ErrCorrupt, err)
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
		return c, 0, natsx.Permanent(fmt.Errorf("release: counter of %s is %w: %w", service, ErrCorrupt, err))
	}
	return c, e.Revision(), nil
}

// OrphanLockAge is how old a lock whose release has no record must be
// before Accept frees it: the record is written milliseconds after the
// lock, and a redelivered request takes its own lock back within its ack
// wait.
const OrphanLockAge = 30 * time.Second

// Busy is Accept's refusal: another release holds the service's lock.
type Busy struct {
	Service string
	Lock    Lock
}

// Error says which release holds the lock, and since when.
func (b *Busy) Error() string {
	return fmt.Sprintf("release %s of %s is in progress (since %s); one release per service at a time",
		b.Lock.Release, b.Service, b.Lock.Since.Format(time.RFC3339))
}

// Accepted is what Accept did: the record it created, and the orphaned
// lock it freed first, if any.
type Accepted struct {
	Record Record
	Freed  *Lock
}

// Accept starts release rec of rec.Service, the releases bucket's one
// creation: it takes the service's lock for rec.ID with a KV Create (held
// by rec.ID already, it is a redelivery and goes on with the group it got),
// names the release's group after the service's counter, advances the
// counter (compare-and-set), and creates the record in phase accepted with
// its Group and Sequence set. Another release's lock is *Busy, unless it is
// older than OrphanLockAge and its release has no record: then it is freed
// (compare-and-set, so a live taker is never robbed) and taken. A record
// that exists already (a redelivery) is kept as it is. Each step is
// idempotent, so a retry after any failure finishes the job.
func (s Store) Accept(ctx context.Context, rec Record, now time.Time) (Accepted, error) {
	var out Accepted
	counter, counterRev, err := s.Counter(ctx, rec.Service)
	if err != nil {
		return out, err
	}
	lock, freed, err := s.lockFor(ctx, rec.Service, rec.ID, counter.Sequence+1, now)
	out.Freed = freed
	if err != nil {
		return out, err
	}
	if counter.LastRelease != rec.ID {
		next := Counter{Sequence: lock.Sequence, LastRelease: rec.ID}
		if err := s.putCounter(ctx, rec.Service, next, counterRev); err != nil {
			return out, err
		}
	}
	rec.Group, rec.Sequence = lock.Group, lock.Sequence
	rec.Phase, rec.History = "", nil
	rec.Enter(PhaseAccepted, now)
	b, _ := json.Marshal(rec)
	if _, err := s.KV.Create(ctx, RecordKey(rec.ID), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return out, fmt.Errorf("release: create record %s: %w", rec.ID, err)
	}
	// the group's release, for a rollback of the release whose group has
	// the traffic when it is no longer the last (a put: a redelivery of
	// the same request writes the same)
	if _, err := s.KV.Put(ctx, GroupKey(rec.Group), []byte(rec.ID)); err != nil {
		return out, fmt.Errorf("release: index %s: %w", rec.Group, err)
	}
	out.Record = rec
	return out, nil
}

// ReleaseOf is the id of the release that made group (ErrNotFound for a
// group made by hand, or before releases were indexed by group).
func (s Store) ReleaseOf(ctx context.Context, group string) (string, error) {
	if ValidateID(group) != nil { // "" or not a key token: no group's name
		return "", fmt.Errorf("release: no release made %q: %w", group, ErrNotFound)
	}
	e, err := s.KV.Get(ctx, GroupKey(group))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("release: no release made %s: %w", group, ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	id := string(e.Value())
	if err := ValidateID(id); err != nil {
		return "", fmt.Errorf("release: group %s's entry: %w", group, ErrCorrupt)
	}
	return id, nil
}

// lockFor takes service's lock for release id as group number seq; held by
// id already, it is returned as it is.
func (s Store) lockFor(ctx context.Context, service, id string, seq int, now time.Time) (Lock, *Lock, error) {
	l := Lock{Release: id, Group: GroupName(service, seq), Since: now.UTC(), Sequence: seq}
	b, _ := json.Marshal(l)
	_, err := s.KV.Create(ctx, LockKey(service), b)
	if err == nil {
		return l, nil, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return Lock{}, nil, fmt.Errorf("release: take lock of %s: %w", service, err)
	}
	held, rev, err := s.Lock(ctx, service)
	if errors.Is(err, ErrNotFound) {
		return s.lockFor(ctx, service, id, seq, now) // freed meanwhile
	}
	if errors.Is(err, ErrCorrupt) {
		return Lock{}, nil, natsx.Permanent(err)
	}
	if err != nil {
		return Lock{}, nil, err
	}
	if held.Release == id {
		return held, nil, nil
	}
	if now.Sub(held.Since) >= OrphanLockAge {
		_, _, gerr := s.Get(ctx, held.Release)
		if errors.Is(gerr, ErrNotFound) {
			// a lock whose release never got its record (its request gave
			// up between the two writes) would hold the service forever
			if err := s.KV.Delete(ctx, LockKey(service), jetstream.LastRevision(rev)); err == nil {
				l, _, err := s.lockFor(ctx, service, id, seq, now)
				return l, &held, err
			}
		}
	}
	return Lock{}, nil, &Busy{Service: service, Lock: held}
}

// putCounter writes the counter with compare-and-set on the revision read.
// Only the lock holder writes it, so a conflict means a redelivery of this
// same request got there first: fine if it recorded this release.
func (s Store) putCounter(ctx context.Context, service string, c Counter, rev uint64) error {
	b, _ := json.Marshal(c)
	var err error
	if rev == 0 {
		_, err = s.KV.Create(ctx, CounterKey(service), b)
	} else {
		_, err = s.KV.Update(ctx, CounterKey(service), b, rev)
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		if cur, _, rerr := s.Counter(ctx, service); rerr == nil && cur.LastRelease == c.LastRelease {
			return nil
		}
	}
	return fmt.Errorf("release: write counter of %s: %w", service, err)
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

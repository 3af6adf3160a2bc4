package release_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

func store(t *testing.T) (release.Store, context.Context) {
	srv := testkit.Start(t)
	ctx := testkit.Context(t, 30*time.Second)
	kv, err := srv.JS(t).KeyValue(ctx, topology.BucketReleases)
	if err != nil {
		t.Fatal(err)
	}
	return release.Store{KV: kv}, ctx
}

func TestStepRefusesStaleSteps(t *testing.T) {
	var r release.Record
	now := time.Now()
	r.Enter(release.PhaseAccepted, now)
	if err := r.Step(release.ByProvisioner, events.ReleaseAccepted, now); err != nil || r.Phase != release.PhaseCanary {
		t.Fatal(err, r.Phase)
	}
	if err := r.Step(release.ByProvisioner, events.ReleaseAccepted, now); err != nil || len(r.History) != 2 {
		t.Fatalf("a repeated step: %v, %d transitions", err, len(r.History))
	}
	if err := r.Step(release.ByRouter, events.RollbackRequested, now); err != nil || r.Phase != release.PhaseRollingBack {
		t.Fatal(err, r.Phase)
	}
	// a late canary.passed after a rollback began must not launch anything
	if err := r.Step(release.ByProvisioner, events.CanaryPassed, now); !errors.Is(err, release.ErrStale) {
		t.Fatalf("launching from rolling_back: %v", err)
	}
	if r.Phase != release.PhaseRollingBack {
		t.Fatalf("phase %s", r.Phase)
	}
}

// TestUpdateIsCompareAndSet: 20 writers racing to append to one record
// all land; none overwrites another.
func TestUpdateIsCompareAndSet(t *testing.T) {
	s, ctx := store(t)
	rec := release.Record{ID: "r1", Service: "hello"}
	rec.Enter(release.PhaseAccepted, time.Now())
	b, _ := json.Marshal(rec)
	if _, err := s.KV.Create(ctx, release.RecordKey("r1"), b); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Update(ctx, "r1", func(r *release.Record) error {
				r.History = append(r.History, release.Transition{Phase: release.Phase("p" + string(rune('a'+i))), At: time.Now()})
				return nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _, err := s.Get(ctx, "r1")
	if err != nil || len(got.History) != 21 {
		t.Fatalf("%d transitions (want 21): %v", len(got.History), err)
	}
	if _, err := s.Update(ctx, "nope", func(*release.Record) error { return nil }); !errors.Is(err, release.ErrNotFound) {
		t.Fatalf("missing record: %v", err)
	}
}

func TestUnlockOnlyByHolder(t *testing.T) {
	s, ctx := store(t)
	l, _ := json.Marshal(release.Lock{Release: "r1", Group: "hello-v001", Since: time.Now()})
	if _, err := s.KV.Create(ctx, release.LockKey("hello"), l); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock(ctx, "hello", "r2"); err != nil {
		t.Fatal(err)
	}
	if held, _, err := s.Lock(ctx, "hello"); err != nil || held.Release != "r1" {
		t.Fatalf("another release's unlock took the lock: %+v %v", held, err)
	}
	if err := s.Unlock(ctx, "hello", "r1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Lock(ctx, "hello"); !errors.Is(err, release.ErrNotFound) {
		t.Fatalf("lock after unlock: %v", err)
	}
	if err := s.Unlock(ctx, "hello", "r1"); err != nil {
		t.Fatalf("unlocking a free lock: %v", err)
	}
}

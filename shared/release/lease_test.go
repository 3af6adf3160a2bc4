package release_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/release"
)

// Two copies' Runs of one release's task: exactly one works at a time; when
// it stops (its service shuts down), the other takes over at once; when it
// dies without letting go, the other takes over once the lease expires.
func TestLeaseKeepsATaskToOneCopy(t *testing.T) {
	st, ctx := store(t)
	// 2 s: a renewal may take up to a third of it (under the race detector
	// on a loaded machine a KV update can take over 100 ms)
	const ttl = 2 * time.Second
	var running, most, starts atomic.Int32
	task := func(ctx context.Context, id string) error {
		n := running.Add(1)
		defer running.Add(-1)
		starts.Add(1)
		for {
			if m := most.Load(); n > m && !most.CompareAndSwap(m, n) {
				continue
			}
			break
		}
		<-ctx.Done()
		return ctx.Err()
	}
	copyOf := func(owner string) (*release.Runs, context.CancelFunc) {
		rctx, cancel := context.WithCancel(ctx)
		r := &release.Runs{Log: zerolog.Nop(), Lease: &release.Lease{KV: st.KV, Role: "test", Owner: owner, TTL: ttl}}
		r.Ensure(rctx, "req-1", task)
		return r, cancel
	}
	a, stopA := copyOf("a")
	waitFor(t, "a task to start", func() bool { return starts.Load() == 1 })
	b, stopB := copyOf("b")
	defer func() { stopB(); b.Wait() }()
	// b stands by for several renewals of a's lease
	deadline := time.Now().Add(3 * ttl)
	for time.Now().Before(deadline) {
		if starts.Load() != 1 {
			t.Fatalf("the task started %d times while a held it", starts.Load())
		}
		time.Sleep(ttl / 10)
	}
	holder := func() release.LeaseHolder {
		e, err := st.KV.Get(ctx, release.LeaseKey("test", "req-1"))
		if err != nil {
			t.Fatal(err)
		}
		var h release.LeaseHolder
		if err := json.Unmarshal(e.Value(), &h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := holder()
	if h.Owner != "a" {
		t.Fatalf("lease held by %q, want a", h.Owner)
	}
	// a shuts down: it lets the lease go and b takes over within its retry,
	// before a's lease would have expired (a renewal after the read above
	// only puts that expiry later)
	stopA()
	a.Wait()
	waitFor(t, "b to take over", func() bool { return starts.Load() == 2 })
	if now := time.Now(); !now.Before(h.Expires) {
		t.Fatalf("b took over at %s, not before a's lease expired (%s): a did not let it go", now.Format(time.StampMilli), h.Expires.Format(time.StampMilli))
	}
	if h = holder(); h.Owner != "b" {
		t.Fatalf("lease held by %q, want b", h.Owner)
	}
	if most.Load() != 1 {
		t.Fatalf("%d copies ran the task at once", most.Load())
	}
}

// A copy that died holding the lease (its entry stays, unrenewed) is taken
// over once the entry expires, not before; a holder whose lease another
// copy took has its task cancelled.
func TestLeaseExpiresAndIsTakenOver(t *testing.T) {
	st, ctx := store(t)
	const ttl = time.Second
	expires := time.Now().Add(ttl)
	dead, _ := json.Marshal(release.LeaseHolder{Owner: "dead", Expires: expires})
	if _, err := st.KV.Create(ctx, release.LeaseKey("test", "req-2"), dead); err != nil {
		t.Fatal(err)
	}
	l := &release.Lease{KV: st.KV, Role: "test", Owner: "b", TTL: ttl}
	started := make(chan time.Time, 1)
	lost := make(chan error, 1)
	go func() {
		var held bool
		for {
			err := l.Hold(ctx, "req-2", func(tctx context.Context) error {
				held = true
				started <- time.Now()
				<-tctx.Done()
				return tctx.Err()
			})
			if !errors.Is(err, release.ErrHeld) || held || ctx.Err() != nil {
				lost <- err
				return
			}
			time.Sleep(ttl / 20) // a copy's retry
		}
	}()
	select {
	case at := <-started:
		if at.Before(expires) {
			t.Fatalf("b took the lease %s before the dead copy's expired", expires.Sub(at))
		}
	case err := <-lost:
		t.Fatalf("b never held the lease: %v", err)
	case <-time.After(5 * ttl):
		t.Fatal("b never took over the expired lease")
	}
	// a third copy overwrites the entry (as if b had stalled past its TTL)
	e, err := st.KV.Get(ctx, release.LeaseKey("test", "req-2"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := json.Marshal(release.LeaseHolder{Owner: "c", Expires: time.Now().Add(time.Minute)})
	if _, err := st.KV.Update(ctx, release.LeaseKey("test", "req-2"), other, e.Revision()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		if !errors.Is(err, release.ErrHeld) {
			t.Fatalf("b's task ended with %v, want ErrHeld", err)
		}
	case <-time.After(3 * ttl): // b's next renewal, a third of a TTL away, finds it
		t.Fatal("b kept working after its lease was taken")
	}
	// and b did not delete c's entry on its way out
	e, err = st.KV.Get(ctx, release.LeaseKey("test", "req-2"))
	if err != nil {
		t.Fatal(err)
	}
	var h release.LeaseHolder
	if json.Unmarshal(e.Value(), &h); h.Owner != "c" {
		t.Fatalf("lease held by %q after b lost it, want c", h.Owner)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOwnerPid(t *testing.T) {
	if pid := release.OwnerPid(release.NewOwner("canary")); pid != os.Getpid() {
		t.Fatalf("OwnerPid(NewOwner) = %d, want %d", pid, os.Getpid())
	}
	for _, bad := range []string{"", "canary", "canary@h/x/1", "canary@h"} {
		if pid := release.OwnerPid(bad); pid != 0 {
			t.Errorf("OwnerPid(%q) = %d", bad, pid)
		}
	}
}

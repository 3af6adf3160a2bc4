package release

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/events"
)

// LeaseTTL is how long a copy's claim on a release's task lasts without a
// renewal. A copy renews every third of it, so a copy that dies hands its
// tasks over to another within LeaseTTL plus the other's retry
// (LeaseTTL/4): within StepAckWait, like a step's message.
const LeaseTTL = 4 * time.Second

// LeaseKey is the key, in the releases bucket, of the lease on a role's
// task for a release: lease.canary-phase.req-12.
func LeaseKey(role, id string) string { return "lease." + role + "." + id }

// Lease fences a release's long-running task (a canary judge, a bake)
// across copies of a service: a copy works on it only while it holds the
// lease, a compare-and-set entry in the releases bucket that it renews. The
// record's compare-and-set phase stays the fence of every step the task
// takes; the lease keeps a second copy from running the same task at all
// (two judges writing one checkpoint, or two verdicts). Clocks of the
// copies must agree within a fraction of TTL: expiry is a time in the
// entry, since a key of a KV bucket has no TTL of its own here.
type Lease struct {
	KV    jetstream.KeyValue
	Role  string
	Owner string
	// TTL defaults to LeaseTTL.
	TTL time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

// LeaseHolder is the value of a lease entry.
type LeaseHolder struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// ErrHeld: another copy holds the lease.
var ErrHeld = errors.New("held by another copy")

func (l *Lease) ttl() time.Duration {
	if l.TTL > 0 {
		return l.TTL
	}
	return LeaseTTL
}

func (l *Lease) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// claim takes the lease if it is free, expired or ours, and returns the
// revision written.
func (l *Lease) claim(ctx context.Context, id string) (uint64, error) {
	key := LeaseKey(l.Role, id)
	b, _ := json.Marshal(LeaseHolder{Owner: l.Owner, Expires: l.now().Add(l.ttl())})
	e, err := l.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := l.KV.Create(ctx, key, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return 0, ErrHeld
		}
		return rev, err
	}
	if err != nil {
		return 0, err
	}
	var h LeaseHolder
	if json.Unmarshal(e.Value(), &h) == nil && h.Owner != l.Owner && l.now().Before(h.Expires) {
		return 0, fmt.Errorf("%w (%s, until %s)", ErrHeld, h.Owner, h.Expires.Format(time.TimeOnly))
	}
	rev, err := l.KV.Update(ctx, key, b, e.Revision())
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, ErrHeld
	}
	return rev, err
}

// Hold runs task while holding the lease on release id: it claims it (or
// returns ErrHeld), renews it every third of its TTL, and cancels task's
// context once a renewal fails long enough that the lease may have passed
// to another copy. The lease is let go when task returns.
func (l *Lease) Hold(ctx context.Context, id string, task func(ctx context.Context) error) error {
	rev, err := l.claim(ctx, id)
	if err != nil {
		return err
	}
	tctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	renewed := make(chan uint64, 1)
	go func() {
		defer close(renewed)
		t := time.NewTicker(l.ttl() / 3)
		defer t.Stop()
		held := l.now()
		for {
			select {
			case <-tctx.Done():
				renewed <- rev
				return
			case <-t.C:
			}
			b, _ := json.Marshal(LeaseHolder{Owner: l.Owner, Expires: l.now().Add(l.ttl())})
			rctx, rcancel := context.WithTimeout(tctx, l.ttl()/3)
			r, err := l.KV.Update(rctx, LeaseKey(l.Role, id), b, rev)
			rcancel()
			switch {
			case err == nil:
				rev, held = r, l.now()
			case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch):
				cancel(fmt.Errorf("%w: lease on %s taken over", ErrHeld, id))
			case l.now().Sub(held) > l.ttl()*2/3: // it may expire before the next try
				cancel(fmt.Errorf("%w: lease on %s not renewed: %v", ErrHeld, id, err))
			}
		}
	}()
	err = task(tctx)
	cancel(nil)
	last := <-renewed
	if cause := context.Cause(tctx); errors.Is(cause, ErrHeld) {
		return cause
	}
	dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer dcancel()
	_ = l.KV.Delete(dctx, LeaseKey(l.Role, id), jetstream.LastRevision(last)) // only our own; else it expires
	return err
}

// NewOwner names one copy of a service as a lease's owner: the service,
// the host, the process and a random part (a copy restarted in the same
// process is a new owner).
func NewOwner(service string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s/%d/%s", service, host, os.Getpid(), events.NewID()[:6])
}

// OwnerPid is the process id in an owner NewOwner made (0 if none).
func OwnerPid(owner string) int {
	_, rest, _ := strings.Cut(owner, "/")
	pid, _, _ := strings.Cut(rest, "/")
	n, err := strconv.Atoi(pid)
	if err != nil {
		return 0
	}
	return n
}

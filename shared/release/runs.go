package release

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
)

// Runs keeps at most one long-running task per release (a canary judge, a
// bake) going: a task that fails (or panics, on outside data) is retried
// after a second until it returns nil or ErrStale, or its context ends.
// With a Lease, it is also at most one across the service's copies: a task
// whose lease another copy holds waits, and takes over once that copy lets
// it go or dies.
type Runs struct {
	Log   zerolog.Logger
	Lease *Lease

	mu      sync.Mutex
	running map[string]bool
	wg      sync.WaitGroup
}

// Ensure starts task for release id unless one is running.
func (r *Runs) Ensure(ctx context.Context, id string, task func(ctx context.Context, id string) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running == nil {
		r.running = map[string]bool{}
	}
	if r.running[id] {
		return
	}
	r.running[id] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.running, id)
			r.mu.Unlock()
		}()
		waiting := false
		for ctx.Err() == nil {
			err := errors.New("the task panicked")
			natsx.Guard(r.Log, "release task "+id, func() {
				if r.Lease == nil {
					err = task(ctx, id)
					return
				}
				err = r.Lease.Hold(ctx, id, func(ctx context.Context) error { return task(ctx, id) })
			})
			if err == nil || errors.Is(err, ErrStale) {
				return
			}
			wait := time.Second
			if errors.Is(err, ErrHeld) {
				if !waiting {
					r.Log.Info().Err(err).Str(logging.FieldRelease, id).Msg("release task runs in another copy; standing by")
				}
				waiting, wait = true, r.Lease.ttl()/4
			} else {
				waiting = false
				r.Log.Warn().Err(err).Str(logging.FieldRelease, id).Msg("release task failed; retrying")
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}()
}

// Count is the number of tasks running.
func (r *Runs) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}

// Wait waits for every task to stop (their contexts must end).
func (r *Runs) Wait() { r.wg.Wait() }

// Step adapts a release step to a consumer handler: it decodes the event,
// requires its release id, bounds the step with timeout, and acks a step
// that no longer applies (ErrStale, or no such release) after logging it.
func Step(log zerolog.Logger, timeout time.Duration, step func(ctx context.Context, ev events.Event) error) natsx.Handler {
	return func(ctx context.Context, msg jetstream.Msg) error {
		ev, err := events.Decode(msg.Data())
		if err != nil {
			return natsx.Permanent(err)
		}
		if ev.ReleaseID == "" {
			return natsx.Permanent(fmt.Errorf("%s without a release id", ev.Type))
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		err = step(ctx, ev)
		if errors.Is(err, ErrStale) || errors.Is(err, ErrNotFound) {
			log.Info().Str(logging.FieldRelease, ev.ReleaseID).Str("event", ev.Type).Err(err).Msg("step skipped")
			return nil
		}
		return err
	}
}

// StepAckWait is the ack wait of the release steps' consumers: a step in
// hand when its service died is redelivered this soon after (a running
// step keeps its message with progress acks every third of it).
const StepAckWait = 5 * time.Second

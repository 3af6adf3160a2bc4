package loop_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/loop"
)

// TestEveryRunsUntilTheContextEnds: fn runs on the period, not before the
// first, and Every returns once ctx ends, with no call after.
func TestEveryRunsUntilTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	done := make(chan struct{})
	start := time.Now()
	var first atomic.Int64
	go func() {
		defer close(done)
		loop.Every(ctx, 10*time.Millisecond, func() {
			if n.Add(1) == 1 {
				first.Store(int64(time.Since(start)))
			}
			if n.Load() == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	if got := n.Load(); got != 3 {
		t.Errorf("fn ran %d times, want 3 (none after the context ended)", got)
	}
	if d := time.Duration(first.Load()); d < 10*time.Millisecond {
		t.Errorf("the first call came after %s, before the period", d)
	}
}

// TestEveryReturnsAtOnceOnAnEndedContext: nothing runs.
func TestEveryReturnsAtOnceOnAnEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	loop.Every(ctx, time.Millisecond, func() { t.Error("fn ran on an ended context") })
}

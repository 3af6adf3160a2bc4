// Package loop runs work on a period for as long as a context lasts: the
// "tick until the context ends" loop of the services, written once.
package loop

import (
	"context"
	"time"
)

// Every calls fn every d until ctx ends; the first call comes after d, and
// a call in progress when ctx ends finishes first (fn sees ctx's end).
func Every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil {
			return
		}
		fn()
	}
}

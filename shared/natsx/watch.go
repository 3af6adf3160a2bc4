package natsx

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Updates hands a KV watcher's entries to fn, in a goroutine of its own,
// until ctx ends or the watcher closes; then it stops the watcher. replay
// is true for the entries stored when the watch began (those before the
// watcher's nil marker). Entries are outside data: a panic in fn is
// recovered and logged as what's (Guard), and the watch goes on. The
// channel returned is closed once the replay is done.
func Updates(ctx context.Context, w jetstream.KeyWatcher, log zerolog.Logger, what string, fn func(e jetstream.KeyValueEntry, replay bool)) <-chan struct{} {
	ready := make(chan struct{})
	go func() {
		defer w.Stop()
		replay := true
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if replay {
						replay = false
						close(ready)
					}
					continue
				}
				Guard(log, what, func() { fn(e, replay) })
			}
		}
	}()
	return ready
}

package natsx

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ListAttempt bounds one listing of a bucket's keys. A listing is a
// watcher that ends with the initial values; one made while its stream
// elects a leader (a node lost) can wait for them for ever, and its key
// channel closes silently when its context ends: a partial list.
const ListAttempt = 3 * time.Second

// Keys lists the keys of kv matching filters, whole or not at all: a
// listing that does not complete within ListAttempt is made again, until
// ctx ends (an error, never a shorter list). No key is an empty list; no
// filter, every key.
func Keys(ctx context.Context, kv jetstream.KeyValue, filters ...string) ([]string, error) {
	entries, err := list(ctx, kv, filters, true)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.Key()
	}
	return keys, nil
}

// Entries lists the current entries of kv matching filters, whole or not
// at all, as Keys does. The values come with the listing, from the
// stream's leader: a get per key after a listing may be answered by a
// replica that is still catching up after a restart, which knows no such
// key.
func Entries(ctx context.Context, kv jetstream.KeyValue, filters ...string) ([]jetstream.KeyValueEntry, error) {
	return list(ctx, kv, filters, false)
}

func list(ctx context.Context, kv jetstream.KeyValue, filters []string, metaOnly bool) ([]jetstream.KeyValueEntry, error) {
	if len(filters) == 0 {
		filters = []string{">"}
	}
	for {
		entries, err := listOnce(ctx, kv, filters, metaOnly)
		if err == nil {
			return entries, nil
		}
		if ctx.Err() != nil || !Transient(err) {
			return nil, fmt.Errorf("natsx: list %s %v: %w", kv.Bucket(), filters, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func listOnce(ctx context.Context, kv jetstream.KeyValue, filters []string, metaOnly bool) ([]jetstream.KeyValueEntry, error) {
	actx, cancel := context.WithTimeout(ctx, ListAttempt)
	defer cancel()
	opts := []jetstream.WatchOpt{jetstream.IgnoreDeletes()}
	if metaOnly {
		opts = append(opts, jetstream.MetaOnly())
	}
	// nats.go writes the bucket's prefix into the slice it is given: a
	// copy, or the next attempt (and the caller) sees "$KV.<bucket>.<filter>".
	w, err := kv.WatchFiltered(actx, slices.Clone(filters), opts...)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // the initial values are all in
				return out, nil
			}
			out = append(out, e)
		case <-actx.Done():
			return nil, actx.Err() // incomplete
		}
	}
}

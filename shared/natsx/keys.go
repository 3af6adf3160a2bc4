package natsx

import (
	"context"
	"errors"
	"fmt"
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
	if len(filters) == 0 {
		filters = []string{">"}
	}
	for {
		keys, err := listOnce(ctx, kv, filters)
		if err == nil {
			return keys, nil
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

func listOnce(ctx context.Context, kv jetstream.KeyValue, filters []string) ([]string, error) {
	actx, cancel := context.WithTimeout(ctx, ListAttempt)
	defer cancel()
	lister, err := kv.ListKeysFiltered(actx, filters...)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer lister.Stop()
	var out []string
	for k := range lister.Keys() {
		out = append(out, k)
	}
	if err := actx.Err(); err != nil {
		return nil, err // incomplete
	}
	return out, nil
}

// Package kv is compare-and-set on JetStream key-value entries that hold
// JSON: read, decide, write with the revision read, and on a conflict read
// and decide again. Every read-modify-write of a bucket goes through Update.
package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrConflict: the key changed under every one of the tries.
var ErrConflict = errors.New("kv: the key kept changing")

// ErrCorrupt: the stored value is not the JSON of the type.
var ErrCorrupt = errors.New("kv: stored value is corrupt")

// Tries is how often Update reads and decides again on a conflict.
const Tries = 20

// Update reads key into a T (the zero T, exists false, when there is no
// entry), lets change decide, and writes the result with compare-and-set
// on the revision it read (a Create when there was no entry). On a
// conflict it reads and decides again, up to Tries times. If change returns
// an error nothing is written and the error is returned as it is; a value
// that change left as it was is not written again. It returns the value
// stored and its revision.
func Update[T any](ctx context.Context, b jetstream.KeyValue, key string, change func(v *T, exists bool) error) (T, uint64, error) {
	var zero T
	for range Tries {
		var v T
		var rev uint64
		var before []byte
		e, err := b.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return zero, 0, fmt.Errorf("kv: get %s: %w", key, err)
		default:
			rev, before = e.Revision(), e.Value()
			if err := json.Unmarshal(before, &v); err != nil {
				return zero, 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, key, err)
			}
			before, _ = json.Marshal(v) // as the type writes it, to compare
		}
		if err := change(&v, rev != 0); err != nil {
			return v, rev, err
		}
		after, err := json.Marshal(v)
		if err != nil {
			return zero, 0, fmt.Errorf("kv: encode %s: %w", key, err)
		}
		if rev != 0 && bytes.Equal(before, after) {
			return v, rev, nil
		}
		var nrev uint64
		if rev == 0 {
			nrev, err = b.Create(ctx, key, after)
		} else {
			nrev, err = b.Update(ctx, key, after, rev)
		}
		if err == nil {
			return v, nrev, nil
		}
		// Create reports a key that appeared meanwhile as ErrKeyExists,
		// Update a newer revision as ErrKeyRevisionMismatch
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !(rev == 0 && errors.Is(err, jetstream.ErrKeyExists)) {
			return zero, 0, fmt.Errorf("kv: write %s: %w", key, err)
		}
	}
	return zero, 0, fmt.Errorf("%w: %s, %d tries", ErrConflict, key, Tries)
}

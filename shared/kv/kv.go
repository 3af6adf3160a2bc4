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
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/natsx"
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
//
// Each read and write is bounded by OpAttempt: a stream electing its leader
// (a node lost) answers nothing until it has one, and a request would wait
// for all of ctx. One that gets no answer is read and decided again, as on
// a conflict, for as long as ctx lasts.
func Update[T any](ctx context.Context, b jetstream.KeyValue, key string, change func(v *T, exists bool) error) (T, uint64, error) {
	var zero T
	for tries := 0; tries < Tries; {
		v, rev, err := update(ctx, b, key, change)
		switch {
		case err == nil || !errors.Is(err, errRetry):
			return v, rev, err
		case errors.Is(err, errNoAnswer) && ctx.Err() == nil:
			select { // no answer: no try spent, a pause before the next
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		default:
			tries++
		}
	}
	return zero, 0, fmt.Errorf("%w: %s, %d tries", ErrConflict, key, Tries)
}

// OpAttempt bounds one read or one write of Update.
const OpAttempt = 4 * time.Second

var (
	errRetry    = errors.New("kv: read and decide again")
	errNoAnswer = fmt.Errorf("%w: no answer", errRetry)
	errChanged  = fmt.Errorf("%w: changed meanwhile", errRetry)
)

// update is one read, decision and write of Update.
func update[T any](ctx context.Context, b jetstream.KeyValue, key string, change func(v *T, exists bool) error) (T, uint64, error) {
	var zero T
	noAnswer := func(err error) error {
		if ctx.Err() == nil && natsx.Transient(err) {
			return fmt.Errorf("%w (%v)", errNoAnswer, err)
		}
		return err
	}
	{
		var v T
		var rev uint64
		var before []byte
		actx, cancel := context.WithTimeout(ctx, OpAttempt)
		e, err := b.Get(actx, key)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return zero, 0, fmt.Errorf("kv: get %s: %w", key, noAnswer(err))
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
		actx, cancel = context.WithTimeout(ctx, OpAttempt)
		if rev == 0 {
			nrev, err = b.Create(actx, key, after)
		} else {
			nrev, err = b.Update(actx, key, after, rev)
		}
		cancel()
		if err == nil {
			return v, nrev, nil
		}
		// Create reports a key that appeared meanwhile as ErrKeyExists,
		// Update a newer revision as ErrKeyRevisionMismatch; a write with no
		// answer may have landed: the next read says
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || (rev == 0 && errors.Is(err, jetstream.ErrKeyExists)) {
			return zero, 0, errChanged
		}
		return zero, 0, fmt.Errorf("kv: write %s: %w", key, noAnswer(err))
	}
}

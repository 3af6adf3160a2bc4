package natsx

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// OpTimeout bounds one read or write of a bucket opened with Bucket. A
// stream electing its leader (a node lost) answers nothing until it has
// one, and a request would otherwise wait for all of its context: a
// service's step (minutes) stalled on one read. Bounded, it fails in
// seconds with a transient error, and the step is tried again.
const OpTimeout = 4 * time.Second

// Bucket opens a bucket whose reads and writes are each bounded by
// OpTimeout (within their own context). Watches and listings are not:
// they last as long as their context (natsx.Keys bounds a listing).
func Bucket(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, err
	}
	return bounded{kv}, nil
}

// bounded is a bucket whose single operations have a deadline.
type bounded struct{ jetstream.KeyValue }

func op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, OpTimeout)
}

func (b bounded) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	ctx, cancel := op(ctx)
	defer cancel()
	return b.KeyValue.Get(ctx, key)
}

func (b bounded) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	ctx, cancel := op(ctx)
	defer cancel()
	return b.KeyValue.GetRevision(ctx, key, revision)
}

func (b bounded) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := op(ctx)
	defer cancel()
	return b.KeyValue.Put(ctx, key, value)
}

func (b bounded) PutString(ctx context.Context, key, value string) (uint64, error) {
	ctx, cancel := op(ctx)
	defer cancel()
	return b.KeyValue.PutString(ctx, key, value)
}

func (b bounded) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	ctx, cancel := op(ctx)
	defer cancel()
	return b.KeyValue.Create(ctx, key, value, opts...)
}

func (b bounded) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	ctx, cancel := op(ctx)
	defer cancel()
	return b.KeyValue.Update(ctx, key, value, revision)
}

func (b bounded) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	ctx, cancel := op(ctx)
	defer cancel()
	return b.KeyValue.Delete(ctx, key, opts...)
}

func (b bounded) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	ctx, cancel := op(ctx)
	defer cancel()
	return b.KeyValue.Purge(ctx, key, opts...)
}

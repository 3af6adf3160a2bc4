package release

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/natsx"
)

// Watch calls fn with every release record in the bucket, first the ones
// stored (replay true), then each change, until ctx ends. A record that
// does not decode, or whose id is not its key's, is skipped; a panic in fn
// is recovered and logged to log. It returns once the stored records have
// been handed to fn.
func Watch(ctx context.Context, kv jetstream.KeyValue, log zerolog.Logger, fn func(r Record, replay bool)) error {
	w, err := kv.Watch(ctx, RecordKey("*"))
	if err != nil {
		return fmt.Errorf("release: watch: %w", err)
	}
	ready := natsx.Updates(ctx, w, log, "release watch", func(e jetstream.KeyValueEntry, replay bool) {
		var r Record
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &r) != nil || RecordKey(r.ID) != e.Key() {
			return
		}
		fn(r, replay)
	})
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// readAttempt bounds each request ReadAll makes.
const readAttempt = 4 * time.Second

// ReadAll passes fn every message of stream under filters, oldest first,
// up to the newest at the time of reading. It ends when a message says no
// more is pending, or when the consumer itself says so; never on a fetch
// that comes back empty, which a stream electing a leader (a node lost)
// gives while it holds messages. Errors are retried until ctx ends, but
// for a stream that does not exist.
func ReadAll(ctx context.Context, js jetstream.JetStream, stream string, filters []string, fn func(jetstream.Msg)) error {
	fail := func(err error) error { return fmt.Errorf("natsx: read %s %v: %w", stream, filters, err) }
	// each request is bounded: one lost in an election waits out its
	// context, and ctx may be long
	var c jetstream.Consumer
	var err error
	for {
		octx, cancel := context.WithTimeout(ctx, readAttempt)
		c, err = js.OrderedConsumer(octx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) || ctx.Err() != nil {
			return fail(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	wait := false
	for {
		// The first fetch takes what is there at once; an empty one that
		// was not the end waits for messages after it.
		var batch jetstream.MessageBatch
		if wait {
			batch, err = c.Fetch(500, jetstream.FetchMaxWait(time.Second))
		} else {
			batch, err = c.FetchNoWait(500)
		}
		if err == nil {
			got, last := 0, false
			for m := range batch.Messages() {
				got++
				fn(m)
				if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
					last = true
				}
			}
			if last {
				return nil
			}
			wait = got == 0
			if err = batch.Error(); got == 0 && (err == nil || errors.Is(err, jetstream.ErrNoMessages)) {
				// Nothing came: either nothing is there or the stream is
				// between leaders. The consumer's own count tells which.
				ictx, cancel := context.WithTimeout(ctx, readAttempt)
				info, ierr := c.Info(ictx)
				cancel()
				if ierr == nil && info.NumPending == 0 {
					return nil
				}
			}
		}
		if err != nil {
			wait = true
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fail(err)
		}
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			// An error that came at once (no responders, say) is not
			// asked again at once.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		if ctx.Err() != nil {
			if err == nil {
				err = ctx.Err()
			}
			return fail(err)
		}
	}
}

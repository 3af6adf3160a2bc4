package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/events"
)

// from says where a tail starts.
type from struct {
	seq  uint64    // a stream sequence, or
	time time.Time // a time, or neither: the beginning
}

// seen is one event read from a stream.
type seen struct {
	ev      events.Event
	subject string
	stored  time.Time
	seq     uint64
	bad     error // the message is not a valid CloudEvent (a raw request)
	raw     []byte
}

// errStop ends a tail without an error.
var errStop = errors.New("stop")

// tail reads a stream through an ordered consumer (no server state left
// behind) and calls fn for each message. With follow it waits for new ones
// until ctx ends; without, it returns once it has caught up.
func (c *client) tail(ctx context.Context, stream string, filters []string, start from, follow bool, fn func(seen) error) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case start.seq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start.seq
	case !start.time.IsZero():
		t := start.time
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := c.js.OrderedConsumer(cctx, stream, cfg)
	if err != nil {
		cancel()
		return fmt.Errorf("read %s: %w", stream, err)
	}
	info, err := cons.Info(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	if !follow && info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer it.Stop()
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read %s: %w", stream, err)
		}
		md, _ := msg.Metadata()
		s := seen{subject: msg.Subject(), raw: msg.Data()}
		if md != nil {
			s.stored, s.seq = md.Timestamp, md.Sequence.Stream
		}
		s.ev, s.bad = events.Decode(msg.Data())
		if err := fn(s); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
		if !follow && md != nil && md.NumPending == 0 {
			return nil
		}
	}
}

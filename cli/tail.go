package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/auth"
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
// behind; for a team user, a pull consumer the team API makes, gone a
// minute after its last pull) and calls fn for each message. With follow it waits for new ones
// until ctx ends, and rides out the loss of a cluster node: a consumer that
// cannot be made or read is made again from the message after the last one
// seen, logged once. Without follow it returns once it has caught up.
func (c *client) tail(ctx context.Context, stream string, filters []string, start from, follow bool, fn func(seen) error) error {
	warned := false
	for {
		last, err := c.tailOnce(ctx, stream, filters, start, follow, fn)
		var ce callbackError
		if errors.As(err, &ce) {
			return ce.err // as the callback returned it
		}
		if err == nil || !follow || ctx.Err() != nil {
			return err
		}
		if !warned {
			fmt.Fprintf(c.warn, "redblack: %v: reading again\n", err)
			warned = true
		}
		if last > 0 {
			start = from{seq: last + 1}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// isTeam reports whether the creds are a team user's, who creates no
// consumer itself (auth.TeamPermissions).
func (c *client) isTeam() bool {
	switch c.id.Team {
	case "", auth.TeamAdmin, auth.TeamAudit, auth.TeamRedblack:
		return false
	}
	return true
}

// teamConsumer has the team API make a pull consumer of one service's
// events (the one filter's) and returns it.
func (c *client) teamConsumer(ctx context.Context, stream string, filters []string, start from) (jetstream.Consumer, error) {
	parts := strings.Split(filters[0], ".")
	if len(filters) != 1 || len(parts) != 3 || parts[2] != ">" {
		return nil, fmt.Errorf("a team reads one service's events: name it with --service")
	}
	req := api.ConsumerRequest{Stream: stream, Filter: filters[0], StartSeq: start.seq, StartTime: start.time}
	var made api.Consumer
	if err := c.call(api.VerbConsumer, parts[1], req, &made); err != nil {
		return nil, err
	}
	return c.js.Consumer(ctx, stream, made.Name)
}

// callbackError is an error of tail's callback: returned as is, never
// retried.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// tailOnce is one ordered consumer's read; it returns the last sequence it
// handed to fn.
func (c *client) tailOnce(ctx context.Context, stream string, filters []string, start from, follow bool, fn func(seen) error) (uint64, error) {
	var last uint64
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case start.seq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start.seq
	case !start.time.IsZero():
		t := start.time
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	var cons jetstream.Consumer
	var err error
	if c.isTeam() {
		cons, err = c.teamConsumer(cctx, stream, filters, start)
	} else {
		cons, err = c.js.OrderedConsumer(cctx, stream, cfg)
	}
	if err != nil {
		cancel()
		return last, fmt.Errorf("read %s: %w", stream, err)
	}
	info, err := cons.Info(cctx)
	cancel()
	if err != nil {
		return last, fmt.Errorf("read %s: %w", stream, err)
	}
	if !follow && info.NumPending == 0 {
		return last, nil
	}
	it, err := cons.Messages()
	if err != nil {
		return last, fmt.Errorf("read %s: %w", stream, err)
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
				return last, ctx.Err()
			}
			return last, fmt.Errorf("read %s: %w", stream, err)
		}
		md, _ := msg.Metadata()
		s := seen{subject: msg.Subject(), raw: msg.Data()}
		if md != nil {
			s.stored, s.seq = md.Timestamp, md.Sequence.Stream
			last = s.seq
		}
		s.ev, s.bad = events.Decode(msg.Data())
		if err := fn(s); err != nil {
			if errors.Is(err, errStop) {
				return last, nil
			}
			return last, callbackError{err}
		}
		if !follow && md != nil && md.NumPending == 0 {
			return last, nil
		}
	}
}

package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/events"
)

// Publish encodes ev and publishes it to subject with Nats-Msg-Id = ev.ID, so
// a second publish of the same event inside the duplicate window is dropped.
// While the stream has no leader to answer (a cluster node lost, a leader
// being elected) it tries again every 250 ms for up to PublishPatience, or
// until ctx ends: safe, as the id makes the retries one message. It returns
// the stream's acknowledgement.
func Publish(ctx context.Context, js jetstream.JetStream, subject string, ev events.Event) (*jetstream.PubAck, error) {
	b, err := ev.Encode()
	if err != nil {
		return nil, fmt.Errorf("natsx: publish %s: %w", subject, err)
	}
	// each attempt is bounded: a request that reached a server whose
	// stream has no leader gets no answer at all, and would wait for all of
	// ctx
	deadline := time.Now().Add(PublishPatience)
	for {
		actx, cancel := context.WithTimeout(ctx, publishAttempt)
		ack, err := js.Publish(actx, subject, b, jetstream.WithMsgID(ev.ID),
			jetstream.WithRetryAttempts(int(publishAttempt/publishRetryWait)), jetstream.WithRetryWait(publishRetryWait))
		cancel()
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) || !Transient(err) {
			return nil, fmt.Errorf("natsx: publish %s %s: %w", subject, ev.Type, err)
		}
	}
}

// publishAttempt bounds one attempt of Publish.
const publishAttempt = 2 * time.Second

// Emit builds an event of kind k with the given id and publishes it on the
// kind's subject for service. A bad event is a Permanent error.
func Emit(ctx context.Context, js jetstream.JetStream, source, id string, k events.Kind, service, releaseID string, data any) error {
	ev, err := events.NewWithID(id, source, k, service, releaseID, data)
	if err != nil {
		return Permanent(err)
	}
	_, err = Publish(ctx, js, k.Subject(service), ev)
	return err
}

// PublishPatience is how long Publish keeps trying a stream that does not
// answer: longer than a leader election after the loss of a node.
const PublishPatience = 10 * time.Second

const publishRetryWait = 250 * time.Millisecond

// Transient reports whether err is one a retry can cure: no server or
// stream answered (a node lost, a leader being elected, a reconnection),
// or an operation timed out waiting for one.
func Transient(err error) bool {
	for _, t := range []error{nats.ErrNoResponders, nats.ErrTimeout, context.DeadlineExceeded, nats.ErrDisconnected,
		nats.ErrConnectionReconnecting, jetstream.ErrNoStreamResponse, jetstream.ErrConsumerLeadershipChanged} {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// Package deadletter captures messages that JetStream gave up on: it reads
// the max-deliveries and terminated advisories from the ADVISORIES stream and
// republishes each original message to dlq.<stream>.<consumer> with the
// reason, so nothing is dropped silently.
package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/topology"
)

// Headers set on every dead letter.
const (
	HeaderReason     = "Redblack-Dlq-Reason"
	HeaderStream     = "Redblack-Dlq-Stream"
	HeaderConsumer   = "Redblack-Dlq-Consumer"
	HeaderSequence   = "Redblack-Dlq-Sequence"
	HeaderSubject    = "Redblack-Dlq-Subject"
	HeaderDeliveries = "Redblack-Dlq-Deliveries"
)

// advisory is the common shape of the max_deliver and terminated advisories.
type advisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
	Reason     string `json:"reason"`
}

// Subject is where the dead letter of a message of stream/consumer goes.
func Subject(stream, consumer string) string { return "dlq." + stream + "." + consumer }

// Run starts the worker; Stop the returned consumer to end it.
func Run(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) (*natsx.Consumer, error) {
	h := func(ctx context.Context, msg jetstream.Msg) error {
		var a advisory
		if err := json.Unmarshal(msg.Data(), &a); err != nil {
			return natsx.Permanent(fmt.Errorf("deadletter: advisory: %w", err))
		}
		return capture(ctx, js, a, log)
	}
	return natsx.Consume(ctx, js, natsx.ConsumerSpec{
		Stream: topology.StreamAdvisories, Durable: topology.DurableDeadLetter, MaxDeliver: 20,
	}, h, log.With().Str("worker", "deadletter").Logger())
}

func capture(ctx context.Context, js jetstream.JetStream, a advisory, log zerolog.Logger) error {
	reason := a.Reason
	if reason == "" {
		reason = fmt.Sprintf("max deliveries reached (%d)", a.Deliveries)
	}
	out := nats.NewMsg(Subject(a.Stream, a.Consumer))
	out.Header.Set(HeaderReason, reason)
	out.Header.Set(HeaderStream, a.Stream)
	out.Header.Set(HeaderConsumer, a.Consumer)
	out.Header.Set(HeaderSequence, strconv.FormatUint(a.StreamSeq, 10))
	out.Header.Set(HeaderDeliveries, strconv.FormatUint(a.Deliveries, 10))
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := js.Stream(cctx, a.Stream)
	if err != nil {
		return fmt.Errorf("deadletter: stream %s: %w", a.Stream, err)
	}
	orig, err := st.GetMsg(cctx, a.StreamSeq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		out.Header.Set(HeaderReason, reason+"; original no longer in the stream")
	case err != nil:
		return fmt.Errorf("deadletter: get %s #%d: %w", a.Stream, a.StreamSeq, err)
	default:
		out.Data = orig.Data
		out.Header.Set(HeaderSubject, orig.Subject)
		for k, v := range orig.Header {
			if len(k) < 5 || k[:5] != "Nats-" {
				out.Header[k] = v
			}
		}
	}
	id := fmt.Sprintf("dlq-%s-%d-%s", a.Stream, a.StreamSeq, a.Consumer)
	if _, err := js.PublishMsg(cctx, out, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("deadletter: publish: %w", err)
	}
	log.Warn().Str("stream", a.Stream).Str("consumer", a.Consumer).Uint64("seq", a.StreamSeq).Str("reason", reason).Msg("dead letter captured")
	return nil
}

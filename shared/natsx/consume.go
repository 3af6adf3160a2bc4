package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Handler processes one message. Returning nil acks it; an error wrapped with
// Permanent terminates it (it goes to the dead-letter queue); any other error
// naks it with an exponential delay until MaxDeliver is reached.
type Handler func(ctx context.Context, msg jetstream.Msg) error

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that no retry can fix.
func Permanent(err error) error { return permanent{err} }

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// ConsumerSpec describes a durable pull consumer.
type ConsumerSpec struct {
	Stream         string
	Durable        string
	FilterSubjects []string
	// MaxDeliver bounds deliveries (default 10).
	MaxDeliver int
	// AckWait is above the slowest normal handler (default 30 s); handlers
	// running longer get InProgress every AckWait/3.
	AckWait time.Duration
	// MaxAckPending bounds messages in flight (default 256).
	MaxAckPending int
	// PullMaxMessages bounds the client's buffer (default 64).
	PullMaxMessages int
	// RetryBase and RetryMax bound the NakWithDelay backoff (default 250ms, 10s).
	RetryBase, RetryMax time.Duration
}

func (s *ConsumerSpec) defaults() {
	if s.MaxDeliver == 0 {
		s.MaxDeliver = 10
	}
	if s.AckWait == 0 {
		s.AckWait = 30 * time.Second
	}
	if s.MaxAckPending == 0 {
		s.MaxAckPending = 256
	}
	if s.PullMaxMessages == 0 {
		s.PullMaxMessages = 64
	}
	if s.RetryBase == 0 {
		s.RetryBase = 250 * time.Millisecond
	}
	if s.RetryMax == 0 {
		s.RetryMax = 10 * time.Second
	}
}

// Backoff is the delay before the next delivery after the n-th (1-based)
// failed one: base·2^(n-1), at most max.
func Backoff(n uint64, base, max time.Duration) time.Duration {
	d := base
	for i := uint64(1); i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// Consumer is a running durable consumer.
type Consumer struct {
	spec ConsumerSpec
	c    jetstream.Consumer
	cc   jetstream.ConsumeContext
}

// Consume creates (or updates) the durable consumer and runs h on every
// message until Stop. ctx bounds the handlers.
func Consume(ctx context.Context, js jetstream.JetStream, spec ConsumerSpec, h Handler, log zerolog.Logger) (*Consumer, error) {
	spec.defaults()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := js.CreateOrUpdateConsumer(cctx, spec.Stream, jetstream.ConsumerConfig{
		Durable:        spec.Durable,
		FilterSubjects: spec.FilterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        spec.AckWait,
		MaxDeliver:     spec.MaxDeliver,
		MaxAckPending:  spec.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("natsx: consumer %s on %s: %w", spec.Durable, spec.Stream, err)
	}
	log = log.With().Str("consumer", spec.Durable).Logger()
	cc, err := c.Consume(func(msg jetstream.Msg) {
		handle(ctx, spec, msg, h, log)
	},
		jetstream.PullMaxMessages(spec.PullMaxMessages),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Warn().Err(err).Msg("consume")
		}))
	if err != nil {
		return nil, fmt.Errorf("natsx: consume %s: %w", spec.Durable, err)
	}
	return &Consumer{spec: spec, c: c, cc: cc}, nil
}

func handle(ctx context.Context, spec ConsumerSpec, msg jetstream.Msg, h Handler, log zerolog.Logger) {
	done := make(chan struct{})
	go func() { // keep a slow handler's message from being redelivered
		t := time.NewTicker(spec.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	err := safely(ctx, msg, h)
	close(done)
	switch {
	case err == nil:
		if aerr := msg.Ack(); aerr != nil {
			log.Warn().Err(aerr).Str("subject", msg.Subject()).Msg("ack")
		}
	case IsPermanent(err):
		log.Error().Err(err).Str("subject", msg.Subject()).Msg("terminating message: no retry can fix it")
		_ = msg.TermWithReason(err.Error())
	default:
		n := uint64(1)
		if md, merr := msg.Metadata(); merr == nil {
			n = md.NumDelivered
		}
		d := Backoff(n, spec.RetryBase, spec.RetryMax)
		log.Warn().Err(err).Str("subject", msg.Subject()).Uint64("delivery", n).Dur("retry_in", d).Msg("handler failed")
		_ = msg.NakWithDelay(d)
	}
}

// Lag is what a consumer has not yet processed.
type Lag struct {
	Consumer       string `json:"consumer"`
	Stream         string `json:"stream"`
	Pending        uint64 `json:"num_pending"`
	AckPending     int    `json:"num_ack_pending"`
	Redelivered    int    `json:"num_redelivered"`
	DeliveredTotal uint64 `json:"delivered_consumer_seq"`
}

// Lag asks the server for the consumer's lag.
func (c *Consumer) Lag(ctx context.Context) (Lag, error) {
	info, err := c.c.Info(ctx)
	if err != nil {
		return Lag{}, fmt.Errorf("natsx: consumer info %s: %w", c.spec.Durable, err)
	}
	return Lag{
		Consumer: c.spec.Durable, Stream: c.spec.Stream,
		Pending: info.NumPending, AckPending: info.NumAckPending, Redelivered: info.NumRedelivered,
		DeliveredTotal: info.Delivered.Consumer,
	}, nil
}

// Stop drains the consumer: no new messages, the ones in hand finish.
func (c *Consumer) Stop() {
	c.cc.Drain()
	<-c.cc.Closed()
}

// safely runs h and turns a panic into a Permanent error, so one poison
// message cannot crash the service or be redelivered forever.
func safely(ctx context.Context, msg jetstream.Msg, h Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	return h(ctx, msg)
}

// Guard runs f and turns a panic into a logged error, returning false: one
// bad KV entry or message cannot stop a watcher or bring the process down.
func Guard(log zerolog.Logger, what string, f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			log.Error().Str("part", what).Interface("panic", r).Msg("recovered from a panic on outside data")
			ok = false
		}
	}()
	f()
	return true
}

package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/subjects"
)

// Totals sums a group's samples.
type Totals struct {
	Requests uint64
	Errors   uint64
	// Bounds are the latency buckets' upper bounds in µs; Latency the
	// counts, one more than Bounds for +Inf.
	Bounds  []int64
	Latency []uint64
	// First and Last bound the samples summed (End of the newest).
	First, Last time.Time
}

// Add sums one sample in. A histogram whose shape differs from the first
// one summed (or has no +Inf count) counts for requests and errors only.
func (t *Totals) Add(s Sample) {
	t.Requests += s.Requests
	t.Errors += s.Errors()
	if t.Bounds == nil && len(s.BucketsMicros) > 0 && len(s.Latency) == len(s.BucketsMicros)+1 {
		t.Bounds = append([]int64(nil), s.BucketsMicros...)
		t.Latency = make([]uint64, len(s.Latency))
	}
	if len(s.Latency) == len(t.Latency) && len(s.BucketsMicros) == len(t.Bounds) {
		for i, c := range s.Latency {
			t.Latency[i] += c
		}
	}
	if t.First.IsZero() || s.Start.Before(t.First) {
		t.First = s.Start
	}
	if s.End.After(t.Last) {
		t.Last = s.End
	}
}

// ErrorRate is errors per request (0 without requests).
func (t Totals) ErrorRate() float64 {
	if t.Requests == 0 {
		return 0
	}
	return float64(t.Errors) / float64(t.Requests)
}

// Quantile estimates the q-quantile of latency from the histogram, by
// interpolating inside the bucket it falls in (0 without data).
func (t Totals) Quantile(q float64) time.Duration {
	var total uint64
	for _, c := range t.Latency {
		total += c
	}
	if total == 0 || len(t.Bounds) == 0 || len(t.Latency) != len(t.Bounds)+1 {
		return 0
	}
	rank := q * float64(total)
	var cum float64
	for i, c := range t.Latency {
		if cum+float64(c) >= rank && c > 0 {
			hi := float64(t.Bounds[min(i, len(t.Bounds)-1)])
			lo := 0.0
			if i > 0 {
				lo = float64(t.Bounds[i-1])
			}
			frac := (rank - cum) / float64(c)
			return time.Duration((lo + frac*(hi-lo)) * float64(time.Microsecond))
		}
		cum += float64(c)
	}
	return time.Duration(t.Bounds[len(t.Bounds)-1]) * time.Microsecond
}

// Follow delivers the samples of the service's groups published since
// since, then every new one, in order, until ctx ends or fn returns false.
// It reads the METRICS stream with an ordered consumer, so a restarted
// reader sees the same samples again. Only the samples f admits reach fn
// (nil: a Filter that checks each sample but knows no routers).
func Follow(ctx context.Context, js jetstream.JetStream, stream, service string, groups []string, since time.Time, f *Filter, fn func(Sample) bool) error {
	if f == nil {
		f = &Filter{Log: zerolog.Nop()}
	}
	filters := make([]string, len(groups))
	for i, g := range groups {
		filters[i] = subjects.Metrics(service, g)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverNewPolicy}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	c, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("metrics: follow %s: %w", service, err)
	}
	it, err := c.Messages()
	if err != nil {
		return fmt.Errorf("metrics: follow %s: %w", service, err)
	}
	go func() { <-ctx.Done(); it.Stop() }()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("metrics: follow %s: %w", service, err)
		}
		s, ok := f.Admit(m.Subject(), m.Data())
		if !ok {
			continue
		}
		if !f.deliver(m.Subject(), s, fn) {
			return nil
		}
	}
}

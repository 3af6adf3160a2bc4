package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
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
//
// The server places an ordered consumer on any replica of the stream,
// which may be one on a node just restarted and still catching up: such a
// consumer delivers nothing new until its replica has caught up. After
// FollowStall with no message, Follow asks the stream's leader for the
// last message of each group; if the leader has one it has not read, the
// consumer is made again from the next sequence (none lost, none twice).
func Follow(ctx context.Context, js jetstream.JetStream, stream, service string, groups []string, since time.Time, f *Filter, fn func(Sample) bool) error {
	if f == nil {
		f = &Filter{Log: zerolog.Nop()}
	}
	filters := make([]string, len(groups))
	for i, g := range groups {
		filters[i] = subjects.GroupSamples(service, g)
	}
	var last uint64 // the stream sequence of the last message read
	for {
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverNewPolicy}
		switch {
		case last > 0:
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
		case !since.IsZero():
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
		}
		stalled, err := followOnce(ctx, js, stream, cfg, since, f, fn, &last)
		if !stalled {
			if err != nil {
				return fmt.Errorf("metrics: follow %s: %w", service, err)
			}
			return nil
		}
		f.Log.Warn().Str("service", service).Uint64("read", last).Msg("metrics reader behind its stream (its replica catching up?): made again")
	}
}

// FollowStall is how long Follow waits for a message before it asks the
// stream's leader whether it is behind.
var FollowStall = 2 * time.Second

// followOnce is one consumer's part of Follow: it reports whether it
// stopped because the consumer was behind the stream's leader.
func followOnce(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig, since time.Time, f *Filter, fn func(Sample) bool, last *uint64) (bool, error) {
	c, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return false, err
	}
	it, err := c.Messages()
	if err != nil {
		return false, err
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	var read atomic.Uint64 // *last, for the checker
	var lastAt atomic.Int64
	read.Store(*last)
	lastAt.Store(time.Now().UnixNano())
	go func() {
		defer it.Stop()
		t := time.NewTicker(FollowStall)
		defer t.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-t.C:
			}
			if time.Since(time.Unix(0, lastAt.Load())) < FollowStall {
				continue
			}
			if behind(fctx, js.Conn(), stream, cfg.FilterSubjects, read.Load(), since) {
				stalled.Store(true)
				return
			}
		}
	}()
	for {
		m, err := it.Next()
		if err != nil {
			if stalled.Load() {
				return true, nil
			}
			if ctx.Err() != nil {
				return false, nil
			}
			return false, err
		}
		lastAt.Store(time.Now().UnixNano())
		if md, err := m.Metadata(); err == nil {
			*last = md.Sequence.Stream
			read.Store(*last)
		}
		s, ok := f.Admit(m.Subject(), m.Data())
		if !ok {
			continue
		}
		if !f.deliver(m.Subject(), s, fn) {
			return false, nil
		}
	}
}

// behind asks the stream's leader (the API's message get, not a direct
// get, which any replica may answer) for the last message on each subject,
// and reports whether it has one the reader has not: later than read, or,
// with nothing read, stored since since.
func behind(ctx context.Context, nc *nats.Conn, stream string, subjectsOf []string, read uint64, since time.Time) bool {
	for _, subj := range subjectsOf {
		req, _ := json.Marshal(map[string]string{"last_by_subj": subj})
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := nc.RequestWithContext(rctx, "$JS.API.STREAM.MSG.GET."+stream, req)
		cancel()
		if err != nil {
			continue // no leader to ask: not known to be behind
		}
		var resp struct {
			Message *struct {
				Seq  uint64    `json:"seq"`
				Time time.Time `json:"time"`
			} `json:"message"`
		}
		if json.Unmarshal(m.Data, &resp) != nil || resp.Message == nil {
			continue // none on that subject (or an error)
		}
		if (read > 0 && resp.Message.Seq > read) || (read == 0 && !since.IsZero() && !resp.Message.Time.Before(since)) {
			return true
		}
	}
	return false
}

package bench

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/topology"
)

// Rates is a service's request rate in 1 s buckets, from the traffic
// samples of every router and discovery client that calls it: each
// sample's requests are spread evenly over its window, so that samples
// whose windows straddle a second are not counted in one bucket.
type Rates struct {
	mu      sync.Mutex
	buckets map[int64]float64 // unix second → requests
	through time.Time         // the latest end of a sample counted
}

// FollowRates counts the service's samples from now until ctx ends.
func FollowRates(ctx context.Context, js jetstream.JetStream, service string) *Rates {
	r := &Rates{buckets: map[int64]float64{}}
	go func() {
		_ = metrics.Follow(ctx, js, topology.StreamMetrics, service, []string{">"}, time.Now(), nil, func(s metrics.Sample) bool {
			r.Add(s)
			return true
		})
	}()
	return r
}

// Add spreads one sample's requests over its window.
func (r *Rates) Add(s metrics.Sample) {
	span := s.End.Sub(s.Start)
	if span <= 0 || s.Requests == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.End.After(r.through) {
		r.through = s.End
	}
	for t := s.Start; t.Before(s.End); {
		sec := t.Unix()
		next := time.Unix(sec+1, 0)
		if s.End.Before(next) {
			next = s.End
		}
		part := next.Sub(t)
		r.buckets[sec] += float64(s.Requests) * float64(part) / float64(span)
		t = next
	}
}

// Await waits until a sample ending at t or later has been counted, or
// for limit.
func (r *Rates) Await(t time.Time, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		done := !r.through.Before(t)
		r.mu.Unlock()
		if done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Series is the requests of each second from from's second up to (not
// including) to's.
func (r *Rates) Series(from, to time.Time) []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []float64
	for sec := from.Unix(); sec < to.Unix(); sec++ {
		out = append(out, r.buckets[sec])
	}
	return out
}

// Deviation is the largest |x − base| / base of during against base, the
// mean of before (0 when before is empty or zero).
func Deviation(before, during []float64) (base, worst float64) {
	for _, x := range before {
		base += x
	}
	if len(before) == 0 || base == 0 {
		return 0, 0
	}
	base /= float64(len(before))
	for _, x := range during {
		worst = max(worst, math.Abs(x-base)/base)
	}
	return base, worst
}

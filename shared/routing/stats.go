package routing

import (
	"math"
	"sort"
	"sync/atomic"
	"time"
)

// NumBuckets is the number of finite latency buckets.
const NumBuckets = 72

// Buckets are the upper bounds of the latency histogram: 100 µs growing by
// 2^¼ (19 %) per bucket to about 22 s, then +Inf. Quarter-octave buckets
// keep a 20 % latency shift visible to the canary judge.
var Buckets = func() []time.Duration {
	out := make([]time.Duration, NumBuckets)
	for i := range out {
		out[i] = time.Duration(100e3 * math.Pow(2, float64(i)/4))
	}
	return out
}()

// Stats are one backend's counters, updated without locks.
type Stats struct {
	Requests   atomic.Uint64
	Status2xx  atomic.Uint64
	Status3xx  atomic.Uint64
	Status4xx  atomic.Uint64
	Status5xx  atomic.Uint64
	ConnErrors atomic.Uint64
	Retries    atomic.Uint64
	Rescued    atomic.Uint64                 // failed here, answered from the fallback group
	Latency    [NumBuckets + 1]atomic.Uint64 // the last is +Inf
	LatencySum atomic.Uint64                 // nanoseconds
	// FirstError is when this backend first answered 5xx or failed (unix
	// ns; 0: never): the router's own timestamp of the first bad response.
	FirstError atomic.Int64
}

// errored records the first error's time; later errors cost one load.
func (s *Stats) errored() {
	if s.FirstError.Load() == 0 {
		s.FirstError.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// Observe records one response.
func (s *Stats) Observe(status int, took time.Duration) {
	s.Requests.Add(1)
	switch {
	case status >= 500:
		s.Status5xx.Add(1)
		s.errored()
	case status >= 400:
		s.Status4xx.Add(1)
	case status >= 300:
		s.Status3xx.Add(1)
	default:
		s.Status2xx.Add(1)
	}
	i := sort.Search(len(Buckets), func(i int) bool { return took <= Buckets[i] })
	s.Latency[i].Add(1)
	s.LatencySum.Add(uint64(took))
}

// ConnError records a request that got no response from this backend.
func (s *Stats) ConnError() {
	s.Requests.Add(1)
	s.ConnErrors.Add(1)
	s.errored()
}

// Snapshot is a copy of Stats.
type Snapshot struct {
	Requests, Status2xx, Status3xx, Status4xx, Status5xx, ConnErrors, Retries, Rescued uint64
	Latency                                                                            [NumBuckets + 1]uint64
	LatencySum                                                                         uint64
	// FirstError is the earliest first error (unix ns) of the backends
	// summed; it is kept, not subtracted, by Sub.
	FirstError int64
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	out := Snapshot{
		Requests: s.Requests.Load(), Status2xx: s.Status2xx.Load(), Status3xx: s.Status3xx.Load(),
		Status4xx: s.Status4xx.Load(), Status5xx: s.Status5xx.Load(), ConnErrors: s.ConnErrors.Load(),
		Retries: s.Retries.Load(), Rescued: s.Rescued.Load(), LatencySum: s.LatencySum.Load(), FirstError: s.FirstError.Load(),
	}
	for i := range out.Latency {
		out.Latency[i] = s.Latency[i].Load()
	}
	return out
}

// Sub returns s − o, the counts of an interval.
func (s Snapshot) Sub(o Snapshot) Snapshot {
	out := Snapshot{
		Requests: s.Requests - o.Requests, Status2xx: s.Status2xx - o.Status2xx, Status3xx: s.Status3xx - o.Status3xx,
		Status4xx: s.Status4xx - o.Status4xx, Status5xx: s.Status5xx - o.Status5xx, ConnErrors: s.ConnErrors - o.ConnErrors,
		Retries: s.Retries - o.Retries, Rescued: s.Rescued - o.Rescued, LatencySum: s.LatencySum - o.LatencySum, FirstError: s.FirstError,
	}
	for i := range out.Latency {
		out.Latency[i] = s.Latency[i] - o.Latency[i]
	}
	return out
}

// Add returns s + o.
func (s Snapshot) Add(o Snapshot) Snapshot {
	out := Snapshot{
		Requests: s.Requests + o.Requests, Status2xx: s.Status2xx + o.Status2xx, Status3xx: s.Status3xx + o.Status3xx,
		Status4xx: s.Status4xx + o.Status4xx, Status5xx: s.Status5xx + o.Status5xx, ConnErrors: s.ConnErrors + o.ConnErrors,
		Retries: s.Retries + o.Retries, Rescued: s.Rescued + o.Rescued, LatencySum: s.LatencySum + o.LatencySum, FirstError: s.FirstError,
	}
	if o.FirstError != 0 && (out.FirstError == 0 || o.FirstError < out.FirstError) {
		out.FirstError = o.FirstError
	}
	for i := range out.Latency {
		out.Latency[i] = s.Latency[i] + o.Latency[i]
	}
	return out
}

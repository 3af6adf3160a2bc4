package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/subjects"
)

// Limits of a sample that can be real.
const (
	// MaxBuckets bounds a histogram's length.
	MaxBuckets = 256
	// MaxSampleBytes bounds an encoded sample.
	MaxSampleBytes = 32 << 10
	// MaxSpan bounds one sample's window.
	MaxSpan = 10 * time.Minute
	// ClockSkew is how far in the future a window may end (another host's
	// clock).
	ClockSkew = 5 * time.Second
	// MaxRate bounds what one publisher can have served: a sample claims
	// at most MaxRate requests per second of its window (a window under a
	// second counts as one). Ten times what a router measures on a
	// 2-core machine (bench router), and far past a discovery client's.
	MaxRate = 1_000_000
)

// ErrInvalid is wrapped by every reason a sample is refused.
var ErrInvalid = errors.New("invalid metrics sample")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate checks that a sample can be real: a named router, a window that
// is ordered, bounded and not in the future, status counts that add up to
// its requests, and a histogram whose bounds are positive and increasing and
// whose counts add up to the requests that got a response.
func (s Sample) Validate(now time.Time) error {
	switch {
	case s.Router == "" || len(s.Router) > 128:
		return invalid("router %q", s.Router)
	case s.Start.IsZero() || s.End.IsZero() || s.End.Before(s.Start):
		return invalid("window %s..%s is not ordered", s.Start, s.End)
	case s.End.Sub(s.Start) > MaxSpan:
		return invalid("window of %s is longer than %s", s.End.Sub(s.Start), MaxSpan)
	case s.End.After(now.Add(ClockSkew)):
		return invalid("window ends %s in the future", s.End.Sub(now).Round(time.Millisecond))
	}
	const limit = 1 << 50 // no sum below can overflow
	for _, c := range []uint64{s.Requests, s.Status2xx, s.Status3xx, s.Status4xx, s.Status5xx, s.ConnErrors, s.Retries, s.Rescued} {
		if c > limit {
			return invalid("count %d is out of range", c)
		}
	}
	if secs := max(s.End.Sub(s.Start).Seconds(), 1); float64(s.Requests) > MaxRate*secs {
		return invalid("%d requests in %s: more than one publisher can serve (%d/s)", s.Requests, s.End.Sub(s.Start), MaxRate)
	}
	if sum := s.Status2xx + s.Status3xx + s.Status4xx + s.Status5xx + s.ConnErrors; sum != s.Requests {
		return invalid("status counts add up to %d, not its %d requests", sum, s.Requests)
	}
	if s.Rescued > s.Status5xx+s.ConnErrors {
		return invalid("%d rescued of %d failed requests", s.Rescued, s.Status5xx+s.ConnErrors)
	}
	if len(s.BucketsMicros) > MaxBuckets {
		return invalid("%d histogram buckets (at most %d)", len(s.BucketsMicros), MaxBuckets)
	}
	if len(s.Latency) != len(s.BucketsMicros)+1 {
		return invalid("%d latency counts for %d bucket bounds (want one more, for +Inf)", len(s.Latency), len(s.BucketsMicros))
	}
	if len(s.BucketsMicros) < 2 || s.BucketsMicros[0] <= 0 {
		return invalid("histogram needs at least two positive bucket bounds")
	}
	for i := 1; i < len(s.BucketsMicros); i++ {
		if s.BucketsMicros[i] <= s.BucketsMicros[i-1] {
			return invalid("bucket bounds are not increasing at %d", i)
		}
	}
	var total uint64
	for _, c := range s.Latency {
		if c > limit {
			return invalid("latency count %d is out of range", c)
		}
		total += c
	}
	if total != s.Requests-s.ConnErrors {
		return invalid("histogram holds %d responses, not the %d the counts say", total, s.Requests-s.ConnErrors)
	}
	return s.validateInstances()
}

// validateInstances checks the breakdown by instance: at most
// MaxInstances, named once each, and adding up to the sample's own counts
// and histogram bucket by bucket.
func (s Sample) validateInstances() error {
	if len(s.Instances) == 0 {
		return nil
	}
	if len(s.Instances) > MaxInstances {
		return invalid("%d instances (at most %d)", len(s.Instances), MaxInstances)
	}
	seen := map[string]bool{}
	var requests, errs uint64
	sum := make([]uint64, len(s.Latency))
	for _, in := range s.Instances {
		switch {
		case in.ID == "" || len(in.ID) > 128:
			return invalid("instance id %q", in.ID)
		case seen[in.ID]:
			return invalid("instance %s is named twice", in.ID)
		case in.Requests > s.Requests || in.Errors > in.Requests:
			return invalid("instance %s: %d errors of %d requests", in.ID, in.Errors, in.Requests)
		case len(in.Latency) > len(s.Latency):
			return invalid("instance %s: %d histogram counts", in.ID, len(in.Latency))
		}
		seen[in.ID] = true
		requests += in.Requests
		errs += in.Errors
		var own uint64
		for j, p := range in.Latency {
			if p[0] >= uint64(len(s.Latency)) || (j > 0 && p[0] <= in.Latency[j-1][0]) || p[1] > s.Latency[p[0]] {
				return invalid("instance %s: histogram count %v is out of place or range", in.ID, p)
			}
			sum[p[0]] += p[1]
			own += p[1]
		}
		if own > in.Requests {
			return invalid("instance %s: histogram holds %d responses of %d requests", in.ID, own, in.Requests)
		}
	}
	if requests != s.Requests || errs != s.Errors() {
		return invalid("instances add up to %d requests and %d errors, not the sample's %d and %d", requests, errs, s.Requests, s.Errors())
	}
	if !slices.Equal(sum, s.Latency) {
		return invalid("instances' histograms do not add up to the sample's")
	}
	return nil
}

// DecodeStrict reads a sample, refusing unknown fields, a size past
// MaxSampleBytes, and a sample that does not belong on its subject: the
// subject names the sample's service, group and publisher
// (subjects.Sample), and the body's router field must be the subject's
// publisher id. The subject, which the server's permissions bind to the
// publisher's creds, is the publisher's identity; the body cannot claim
// another's.
func DecodeStrict(subject string, b []byte) (Sample, error) {
	var s Sample
	if len(b) > MaxSampleBytes {
		return s, invalid("%d bytes (at most %d)", len(b), MaxSampleBytes)
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return s, invalid("does not decode: %v", err)
	}
	if d.More() {
		return s, invalid("trailing data")
	}
	if subject == "" {
		return s, nil
	}
	service, group, _, id, ok := subjects.ParseSample(subject)
	switch {
	case !ok:
		return s, invalid("subject %s is not metrics.<service>.<group>.<publisher>.<id>", subject)
	case service != s.Service || group != s.Group:
		return s, invalid("names %s/%s but came on %s", s.Service, s.Group, subject)
	case s.Router != id:
		return s, invalid("claims router %q but came on %s: a publisher's id is its subject's", s.Router, subject)
	}
	return s, nil
}

// Filter admits the samples a judge may count and drops the rest, each
// counted and logged with its subject: undecodable or invalid samples,
// samples from a router the mesh does not know, and windows that repeat or
// overlap one already counted from the same publisher (its subject's
// publisher and id) for the same group. A sample is only ever compared
// with its own publisher's: no sample can make another's be dropped.
type Filter struct {
	// Known reports whether a publisher's id (its subject's) belongs to
	// the mesh (nil: any).
	Known func(publisher, id string) bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	Log zerolog.Logger

	mu      sync.Mutex
	last    map[string]time.Time
	dropped atomic.Uint64
}

// Dropped is how many samples the filter refused.
func (f *Filter) Dropped() uint64 { return f.dropped.Load() }

// Seen is the end of the last window counted per publisher and group, to
// resume after a restart.
func (f *Filter) Seen() map[string]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]time.Time, len(f.last))
	for k, v := range f.last {
		out[k] = v
	}
	return out
}

// Resume restores Seen. A reader resumes the stream from Since(Seen()).
func (f *Filter) Resume(seen map[string]time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = make(map[string]time.Time, len(seen))
	for k, v := range seen {
		f.last[k] = v
	}
}

// errCounted: a window already counted, seen again when a reader resumes
// from a little before its last sample. Not a fault: skipped silently.
var errCounted = errors.New("already counted")

// Since is where a resumed reader starts: the earliest of the windows'
// ends (a sample is published after its window ends), or from if later.
func Since(seen map[string]time.Time, from time.Time) time.Time {
	var min time.Time
	for _, t := range seen {
		if min.IsZero() || t.Before(min) {
			min = t
		}
	}
	if min.After(from) {
		return min
	}
	return from
}

// Admit decodes and checks one message of the METRICS stream.
func (f *Filter) Admit(subject string, data []byte) (Sample, bool) {
	s, err := f.admit(subject, data)
	if errors.Is(err, errCounted) {
		return s, false
	}
	if err != nil {
		f.dropped.Add(1)
		f.Log.Warn().Str("subject", subject).Err(err).Uint64("dropped", f.dropped.Load()).Msg("metrics sample dropped")
		return s, false
	}
	return s, true
}

func (f *Filter) admit(subject string, data []byte) (Sample, error) {
	s, err := DecodeStrict(subject, data)
	if err != nil {
		return s, err
	}
	now := time.Now()
	if f.Now != nil {
		now = f.Now()
	}
	if err := s.Validate(now); err != nil {
		return s, err
	}
	if f.Known != nil {
		if _, _, publisher, id, ok := subjects.ParseSample(subject); !ok || !f.Known(publisher, id) {
			return s, invalid("publisher %s is not one of the mesh's", strings.TrimPrefix(subject, subjects.GroupSamples(s.Service, s.Group)))
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == nil {
		f.last = map[string]time.Time{}
	}
	k := publisherKey(subject, s) + "|" + s.Group
	if last, ok := f.last[k]; ok && !s.End.After(last) {
		return s, errCounted // not counted again
	}
	if last, ok := f.last[k]; ok && s.Start.Before(last) {
		return s, invalid("window %s..%s overlaps one already counted from the same publisher %s (ending %s)",
			s.Start.Format(time.RFC3339Nano), s.End.Format(time.RFC3339Nano), k, last.Format(time.RFC3339Nano))
	}
	f.last[k] = s.End
	return s, nil
}

// publisherKey is who published s: its subject's publisher and id (the
// body's router alone for a sample read without its subject).
func publisherKey(subject string, s Sample) string {
	if _, _, publisher, id, ok := subjects.ParseSample(subject); ok {
		return publisher + "/" + id
	}
	return s.Router
}

// deliver hands an admitted sample to fn; a panic in fn drops the sample
// (counted and logged) instead of taking the service down.
func (f *Filter) deliver(subject string, s Sample, fn func(Sample) bool) (more bool) {
	defer func() {
		if r := recover(); r != nil {
			f.dropped.Add(1)
			f.Log.Error().Str("subject", subject).Interface("panic", r).Msg("metrics sample dropped: its handler panicked")
			more = true
		}
	}()
	return fn(s)
}

// Directory knows the mesh's routers and discovery clients: every router
// answers a request on subjects.RouterApplied with its id, every client on
// subjects.CallerApplied. The two are asked on inboxes of their own, so a
// client (which may answer only the requests it received) can never be
// known as a router. The answers are cached; an unknown id refreshes them
// at most once per Refresh.
type Directory struct {
	NC      *nats.Conn
	Refresh time.Duration

	mu      sync.Mutex
	routers map[string]bool
	callers map[string]bool
	asked   time.Time
}

// Known reports whether id is a live publisher of its kind: a router's id,
// or a source of one (the CloudWatch bridge inside a router publishes as
// "<router>/cloudwatch"), for subjects.PublisherRouter; a discovery
// client's id for any other publisher (subjects.CallerPublisher).
func (d *Directory) Known(publisher, id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	known := func() bool {
		if publisher == subjects.PublisherRouter {
			base, _, _ := strings.Cut(id, "/")
			return d.routers[base]
		}
		return d.callers[id]
	}
	if known() {
		return true
	}
	every := d.Refresh
	if every == 0 {
		every = 2 * time.Second
	}
	if time.Since(d.asked) < every {
		return false
	}
	d.asked = time.Now()
	d.routers = ask(d.NC, subjects.RouterApplied, d.routers)
	d.callers = ask(d.NC, subjects.CallerApplied, d.callers)
	return known()
}

// ask adds to known the ids that answer a request on subject within 200
// ms, on an inbox of its own.
func ask(nc *nats.Conn, subject string, known map[string]bool) map[string]bool {
	if known == nil {
		known = map[string]bool{}
	}
	if nc == nil {
		return known
	}
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return known
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return known
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil { // the deadline, or no responders
			return known
		}
		var a struct {
			Router string `json:"router"`
		}
		if json.Unmarshal(m.Data, &a) == nil && a.Router != "" {
			known[a.Router] = true
		}
	}
}

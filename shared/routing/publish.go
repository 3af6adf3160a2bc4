package routing

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/subjects"
)

// Publisher publishes one sample per routed group every Interval (each
// window ending on a multiple of it) on
// metrics.<service>.<group>.<publisher>.<source> (subjects.Sample): the counts since the last one, summed over the
// group's backends in Registry. Groups without traffic get zero samples, so
// "no data" is visible. The router and the discovery client publish the
// same samples; the canary judge and the watchdog read them alike.
type Publisher struct {
	JS jetstream.JetStream
	// Source is the samples' router field and their subject's id: the id
	// the judges know the publisher by (it answers subjects.RouterApplied
	// or subjects.CallerApplied with it).
	Source string
	// Kind is the samples' publisher token, the one its NATS user may
	// publish as: subjects.PublisherRouter, or subjects.CallerPublisher of
	// the calling service.
	Kind     string
	Registry *Registry
	// Table is the table now routed from.
	Table    func() *Table
	Interval time.Duration
	// Only, when set, limits the samples to the services it accepts (a
	// discovery client's user may publish those of its downstream
	// services only).
	Only func(service string) bool
	Log  zerolog.Logger
}

// MaxQueued bounds the samples kept while METRICS takes none: a minute of
// a few dozen groups at the default interval.
const MaxQueued = 2000

type groupKey struct{ service, group string }

type queued struct {
	subject string
	data    []byte
	id      string
}

// Run publishes until ctx ends, and then the last window's counts (up to
// then): a router or a client that stops, an instance of a destroyed group
// say, loses none of the requests it sent.
func (p *Publisher) Run(ctx context.Context) {
	last := map[*Backend]Snapshot{}
	bounds := make([]int64, len(Buckets))
	for i, b := range Buckets {
		bounds[i] = b.Microseconds()
	}
	// windows end on multiples of the interval, so that every router's
	// and every client's samples cover the same spans: a sum over sources
	// per second is exact, even while traffic moves from one to another
	next := func() time.Time { return time.Now().Truncate(p.Interval).Add(p.Interval) }
	end := next()
	t := time.NewTimer(time.Until(end))
	defer t.Stop()
	start := time.Now().UTC()
	var queue []queued
	for {
		stopping := false
		select {
		case <-ctx.Done():
			stopping, end = true, time.Now()
		case <-t.C:
		}
		end = end.UTC()
		queue = append(queue, p.collect(last, bounds, start, end)...)
		if stopping {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			p.flush(fctx, queue)
			cancel()
			return
		}
		queue = p.flush(ctx, queue)
		start, end = end, next()
		t.Reset(time.Until(end))
	}
}

// collect makes the samples of the window start..end: each group's counts
// since last, which it updates. A gone backend's last counts go into
// them, and it is forgotten.
func (p *Publisher) collect(last map[*Backend]Snapshot, bounds []int64, start, end time.Time) []queued {
	sums := map[groupKey]Snapshot{}
	for _, svc := range p.Table().Services {
		if p.Only != nil && !p.Only(svc.Name) {
			continue
		}
		for g := range svc.All {
			sums[groupKey{svc.Name, g}] = Snapshot{}
		}
	}
	parts := map[groupKey][]metrics.InstanceSample{}
	var gone []*Backend
	for _, b := range p.Registry.Backends() {
		if b.Gone() {
			gone = append(gone, b)
		}
		if p.Only != nil && !p.Only(b.Service) {
			continue
		}
		now := b.Stats.Snapshot()
		k := groupKey{b.Service, b.Group}
		d := now.Sub(last[b])
		sums[k] = sums[k].Add(d)
		last[b] = now
		if d.Requests > 0 {
			parts[k] = append(parts[k], metrics.InstanceSample{ID: b.ID, Requests: d.Requests, Errors: d.Status5xx + d.ConnErrors, Latency: metrics.Sparse(d.Latency[:])})
		}
	}
	var out []queued
	for k, d := range sums {
		sample := metrics.Sample{
			Service: k.service, Group: k.group, Router: p.Source, Start: start, End: end,
			Requests: d.Requests, Status2xx: d.Status2xx, Status3xx: d.Status3xx, Status4xx: d.Status4xx, Status5xx: d.Status5xx,
			ConnErrors: d.ConnErrors, Retries: d.Retries, Rescued: d.Rescued, BucketsMicros: bounds, Latency: d.Latency[:], LatencySumNs: d.LatencySum,
		}
		if d.FirstError != 0 {
			sample.FirstError = time.Unix(0, d.FirstError).UTC()
		}
		if ps := mergeParts(parts[k]); len(ps) <= metrics.MaxInstances {
			sample.Instances = ps
		}
		out = append(out, queued{subjects.Sample(k.service, k.group, p.Kind, p.Source), sample.Encode(), fmt.Sprintf("%s:%s:%d", p.Source, k.group, end.UnixNano())})
	}
	for _, b := range gone {
		if p.Registry.Forget(b) {
			delete(last, b)
		}
	}
	return out
}

// mergeParts sums the parts of backends that name the same instance (one
// replaced in the registry within a window), ordered by id.
func mergeParts(ps []metrics.InstanceSample) []metrics.InstanceSample {
	if len(ps) < 2 {
		return ps
	}
	slices.SortFunc(ps, func(a, b metrics.InstanceSample) int { return strings.Compare(a.ID, b.ID) })
	out := ps[:1]
	for _, p := range ps[1:] {
		last := &out[len(out)-1]
		if p.ID != last.ID {
			out = append(out, p)
			continue
		}
		h := make([]uint64, NumBuckets+1)
		for _, part := range [][][2]uint64{last.Latency, p.Latency} {
			for _, q := range part {
				if q[0] < uint64(len(h)) {
					h[q[0]] += q[1]
				}
			}
		}
		last.Requests += p.Requests
		last.Errors += p.Errors
		last.Latency = metrics.Sparse(h)
	}
	return out
}

// flush publishes the queue in order, and keeps what METRICS cannot take
// (a node lost, an election): a bake or a canary loses no evidence to a
// leader election, only gets it late.
func (p *Publisher) flush(ctx context.Context, queue []queued) []queued {
	if over := len(queue) - MaxQueued; over > 0 {
		p.Log.Warn().Int("dropped", over).Msg("metrics samples unpublished for too long: the oldest dropped")
		queue = queue[over:]
	}
	for len(queue) > 0 {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := p.JS.Publish(pctx, queue[0].subject, queue[0].data, jetstream.WithMsgID(queue[0].id))
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				p.Log.Warn().Err(err).Int("queued", len(queue)).Msg("publish metrics sample; kept to try again")
			}
			break
		}
		queue = queue[1:]
	}
	return queue
}

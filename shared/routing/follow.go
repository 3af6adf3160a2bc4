package routing

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// Follower keeps a routing table built from the routes, instances and
// services buckets, rebuilt on every change that routing reads. The router
// and the discovery client of inner tiers (shared/discovery/lb) both route
// from one, so that a switch, a canary share or a rollback means the same
// in either.
type Follower struct {
	// Routes and Instances are required. Services (the specs: host names,
	// capacity, dedicated ports) is optional: a discovery client routes by
	// service name and needs none of it.
	Routes, Instances, Services jetstream.KeyValue
	// Registry keeps the backends across tables (default: a new one).
	Registry *Registry
	// InstanceTTL is how long an entry that aged out stays routable
	// (default: the topology's).
	InstanceTTL time.Duration
	// Swap receives every table built, in order.
	Swap func(*Table)
	// Rebuilt, when set, is called after each rebuild, without the
	// follower's lock (the router opens the dedicated ports).
	Rebuilt func()
	Log     zerolog.Logger

	mu        sync.Mutex
	routes    map[string]routes.Route
	revisions map[string]uint64
	entries   map[string]discovery.Entry
	entryRevs map[string]uint64    // the entries' last revisions (an expiry's, while in grace)
	changedAt map[string]time.Time // when each service's route last changed
	hostnames map[string][]string
	capacity  map[string]int
	ports     map[string]int  // dedicated port by service, from specs
	anyMethod map[string]bool // traffic.retry_non_idempotent, by service
	protocol  map[string]string
}

// Start follows the buckets until ctx ends. It returns once the initial
// values are in and the first table is built and swapped in.
func (f *Follower) Start(ctx context.Context) error {
	if f.Routes == nil || f.Instances == nil || f.Swap == nil {
		return errors.New("routing: a follower needs the routes and instances buckets and a Swap")
	}
	if f.Registry == nil {
		f.Registry = NewRegistry()
	}
	if f.InstanceTTL <= 0 {
		f.InstanceTTL = topology.DefaultOptions().InstanceTTL
	}
	f.routes, f.revisions, f.entries, f.entryRevs = map[string]routes.Route{}, map[string]uint64{}, map[string]discovery.Entry{}, map[string]uint64{}
	f.changedAt, f.hostnames, f.capacity, f.ports = map[string]time.Time{}, map[string][]string{}, map[string]int{}, map[string]int{}
	f.anyMethod = map[string]bool{}
	f.protocol = map[string]string{}
	watches := []bucketWatch{
		{f.Routes, f.applyRoute, func() []string { return keysOf(f.routes) }},
		{f.Instances, f.applyInstance, func() []string { return keysOf(f.entries) }},
	}
	if f.Services != nil {
		watches = append(watches, bucketWatch{f.Services, f.applySpec, func() []string { return keysOf(f.capacity) }})
	}
	ready := make(chan struct{}, len(watches))
	for _, w := range watches {
		go f.follow(ctx, w, ready)
	}
	for range watches {
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("routing: buckets did not answer in 10s")
		}
	}
	f.rebuild()
	return nil
}

// Route is a service's route as last read.
func (f *Follower) Route(service string) routes.Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.routes[service]
}

// Capacity is the least size a service's serving group must have, from its
// spec as last read: its capacity, or its autoscale min (0: unknown).
func (f *Follower) Capacity(service string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.capacity[service]
}

// Ports are the dedicated ports the specs ask for, by service.
func (f *Follower) Ports() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.ports)
}

// Groups lists every service's groups in the routes (with weight or not:
// a canary's share comes and goes).
func (f *Follower) Groups() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	for svc, r := range f.routes {
		out[svc] = r.Groups()
	}
	return out
}

// bucketWatch is one bucket the table is built from: apply records an
// update (under f.mu) and reports whether the table must be rebuilt; known
// lists the keys recorded (under f.mu).
type bucketWatch struct {
	kv    jetstream.KeyValue
	apply func(jetstream.KeyValueEntry) bool
	known func() []string
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// StallAfter is how long a watcher may stay behind its bucket before it is
// made again. A watcher is an ordered consumer on one node; when that node
// dies the client notices only after missed heartbeats (some 10 s), and
// meanwhile the table would miss every change: a canary's instances, a
// switch.
const StallAfter = 2 * time.Second

// follow applies one bucket's updates for as long as ctx lasts. A watcher
// that falls behind the bucket by StallAfter is made again; what its replay
// no longer lists is dropped as expired (an instance keeps its grace).
func (f *Follower) follow(ctx context.Context, w bucketWatch, ready chan<- struct{}) {
	initial := true
	for ctx.Err() == nil {
		wt, err := w.kv.WatchAll(ctx)
		if err != nil {
			f.Log.Warn().Err(err).Str("bucket", w.kv.Bucket()).Msg("watch; trying again")
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		var seen atomic.Uint64
		wctx, stop := context.WithCancel(ctx)
		stalled := stalled(wctx, w.kv, &seen)
		replay := map[string]bool{}
		replaying := true
	updates:
		for {
			select {
			case <-ctx.Done():
				break updates
			case <-stalled:
				f.Log.Warn().Str("bucket", w.kv.Bucket()).Uint64("seen", seen.Load()).Msg("watcher behind its bucket (its node died?): made again")
				break updates
			case e, ok := <-wt.Updates():
				if !ok {
					break updates
				}
				if e == nil { // the replay is done
					if replaying && !initial {
						f.dropUnlisted(w, replay)
					}
					if replaying && initial {
						initial = false
						ready <- struct{}{}
					}
					replaying = false
					continue
				}
				seen.Store(e.Revision())
				if replaying {
					replay[e.Key()] = true
				}
				changed := false
				natsx.Guard(f.Log, "routing watch "+e.Bucket()+"/"+e.Key(), func() {
					f.mu.Lock()
					defer f.mu.Unlock()
					changed = w.apply(e)
				})
				if changed && !initial {
					natsx.Guard(f.Log, "routing rebuild", f.rebuild)
				}
			}
		}
		stop()
		_ = wt.Stop()
	}
}

// stalled closes the channel it returns once the bucket's last sequence
// has been ahead of what the watcher delivered for StallAfter.
func stalled(ctx context.Context, kv jetstream.KeyValue, seen *atomic.Uint64) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		t := time.NewTicker(StallAfter / 4)
		defer t.Stop()
		var behind time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			sctx, cancel := context.WithTimeout(ctx, StallAfter/4)
			st, err := kv.Status(sctx)
			cancel()
			if err != nil {
				continue // the bucket does not answer either: nothing to compare
			}
			b, ok := st.(*jetstream.KeyValueBucketStatus)
			if !ok || b.StreamInfo().State.LastSeq <= seen.Load() {
				behind = time.Time{}
				continue
			}
			if behind.IsZero() {
				behind = time.Now()
			} else if time.Since(behind) >= StallAfter {
				close(out)
				return
			}
		}
	}()
	return out
}

// dropUnlisted drops what a new watcher's replay did not list: changed
// while the old one was stalled. An instance gets the grace of an expiry.
func (f *Follower) dropUnlisted(w bucketWatch, listed map[string]bool) {
	changed := false
	f.mu.Lock()
	for _, k := range w.known() {
		if !listed[k] {
			changed = w.apply(gone{bucket: w.kv.Bucket(), key: k}) || changed
		}
	}
	f.mu.Unlock()
	if changed {
		natsx.Guard(f.Log, "routing rebuild", f.rebuild)
	}
}

// gone is a key no longer in its bucket, as an update.
type gone struct{ bucket, key string }

func (g gone) Bucket() string                  { return g.bucket }
func (g gone) Key() string                     { return g.key }
func (g gone) Value() []byte                   { return nil }
func (g gone) Revision() uint64                { return 0 }
func (g gone) Created() time.Time              { return time.Now() }
func (g gone) Delta() uint64                   { return 0 }
func (g gone) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePurge }

func deleted(e jetstream.KeyValueEntry) bool {
	return e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge
}

// The apply functions record one bucket update and report whether the
// routing table must be rebuilt.

func (f *Follower) applyRoute(e jetstream.KeyValueEntry) bool {
	if deleted(e) {
		delete(f.routes, e.Key())
		delete(f.revisions, e.Key())
		return true
	}
	r, err := routes.Decode(e.Value())
	if err != nil {
		return false
	}
	f.routes[e.Key()], f.revisions[e.Key()] = r, e.Revision()
	f.changedAt[e.Key()] = time.Now()
	time.AfterFunc(SettleFor, func() { natsx.Guard(f.Log, "routing rebuild", f.rebuild) }) // the route settled
	return true
}

// SettleFor is how long after a route change its previous group may serve
// for a new group this table has no instance of yet (its watcher of
// instances behind): longer than StallAfter and a watcher's replay.
const SettleFor = 10 * time.Second

func (f *Follower) applyInstance(e jetstream.KeyValueEntry) bool {
	old, had := f.entries[e.Key()]
	if e.Operation() == jetstream.KeyValuePurge && had {
		// the entry aged out (the bucket's TTL), which is no proof the
		// instance is gone: after an outage of the whole cluster every
		// entry expires at once, before the provisioner's next heartbeat.
		// It stays routable for one more TTL (a dead one fails its
		// connections, which are retried elsewhere and eject it); the
		// provisioner's explicit delete removes at once.
		f.expiring(e.Key(), e.Revision())
		return false
	}
	if deleted(e) {
		delete(f.entries, e.Key())
		delete(f.entryRevs, e.Key())
		return had
	}
	d, err := discovery.Decode(e.Value())
	if err != nil {
		return false
	}
	f.entries[e.Key()] = d
	f.entryRevs[e.Key()] = e.Revision()
	// the provisioner's heartbeat re-puts unchanged entries every few
	// seconds: only a change of what routing reads rebuilds the table
	return !had || old.State != d.State || old.Address != d.Address || old.Group != d.Group || old.Service != d.Service
}

// expiring drops an aged-out entry after a grace of one TTL, unless it
// was put again meanwhile. Called with f.mu held.
func (f *Follower) expiring(key string, rev uint64) {
	f.entryRevs[key] = rev
	f.Log.Warn().Str("instance", key).Dur("grace", f.InstanceTTL).Msg("discovery entry expired: still routed for a grace period")
	time.AfterFunc(f.InstanceTTL, func() {
		f.mu.Lock()
		drop := f.entryRevs[key] == rev
		if drop {
			delete(f.entries, key)
			delete(f.entryRevs, key)
		}
		f.mu.Unlock()
		if drop {
			natsx.Guard(f.Log, "routing rebuild", f.rebuild)
		}
	})
}

func (f *Follower) applySpec(e jetstream.KeyValueEntry) bool {
	if deleted(e) {
		delete(f.hostnames, e.Key())
		delete(f.capacity, e.Key())
		delete(f.ports, e.Key())
		delete(f.anyMethod, e.Key())
		delete(f.protocol, e.Key())
		return true
	}
	sp, err := spec.Decode(e.Value())
	if err != nil {
		return false
	}
	capacity := sp.Capacity
	if sp.Autoscale != nil {
		capacity = sp.Autoscale.Min // the serving group's size follows the load
	}
	f.hostnames[e.Key()], f.capacity[e.Key()], f.ports[e.Key()] = sp.Hostnames, capacity, sp.Port
	f.anyMethod[e.Key()] = sp.Traffic.RetryNonIdempotent
	f.protocol[e.Key()] = sp.Protocol
	return true
}

// rebuild builds a table from the current state and swaps it in.
func (f *Follower) rebuild() {
	f.mu.Lock()
	settling := map[string]bool{}
	for name, at := range f.changedAt {
		if time.Since(at) < SettleFor {
			settling[name] = true
		}
	}
	t := f.Registry.Build(Input{Routes: f.routes, Revisions: f.revisions, Instances: f.entries, Hostnames: f.hostnames, Settling: settling, RetryNonIdempotent: f.anyMethod, Protocols: f.protocol})
	f.Swap(t)
	f.mu.Unlock()
	if f.Rebuilt != nil {
		f.Rebuilt()
	}
}

// Package routing is the router's routing table: per service, the server
// groups with their weights and their up instances. A table is immutable once
// built and swapped atomically, so a request sees the whole old table or the
// whole new one; picking a group and an instance takes no lock and allocates
// nothing.
package routing

import (
	"bytes"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/hostname"
	"github.com/redblack/redblack/shared/routes"
)

// Backend is one instance as the router sees it. Backends keep their
// identity across tables (same instance id and address, same *Backend), so
// outstanding counts, ejection and metrics survive a table swap.
type Backend struct {
	ID, Service, Group, Addr string
	// Slot is the stable slot the instance runs (a stateful service's),
	// or "".
	Slot string

	Inflight     atomic.Int64
	fails        atomic.Int32
	ejectedUntil atomic.Int64 // unix nanoseconds
	ejections    atomic.Int32
	gone         atomic.Bool // no instance entry names it any more
	Stats        Stats
}

// Gone reports whether the instance's entry is gone from discovery: its
// backend is forgotten once its last counts are published (Forget).
func (b *Backend) Gone() bool { return b.gone.Load() }

// Ejected reports whether passive health checking has taken it out.
func (b *Backend) Ejected(now int64) bool { return b.ejectedUntil.Load() > now }

// Result records the outcome of one request for passive ejection: after
// ejectAfter consecutive failures (5xx or connection errors) the backend is
// ejected for base·2^(ejections-1), at most 30 s; a success resets the count.
func (b *Backend) Result(failed bool, ejectAfter int32, base time.Duration) {
	if !failed {
		b.fails.Store(0)
		if b.ejectedUntil.Load() != 0 && !b.Ejected(time.Now().UnixNano()) {
			b.ejections.Store(0)
			b.ejectedUntil.Store(0)
		}
		return
	}
	if b.fails.Add(1) < ejectAfter {
		return
	}
	b.fails.Store(0)
	n := b.ejections.Add(1)
	d := base
	for i := int32(1); i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	b.ejectedUntil.Store(time.Now().Add(min(d, 30*time.Second)).UnixNano())
}

// Group is a server group in a table.
type Group struct {
	Name     string
	Weight   int
	Backends []*Backend
	// MaxEjected is how many backends may be ejected before panic routing
	// sends traffic to all of them.
	MaxEjected int
	// Budget bounds the requests this group serves as a service's
	// fallback (see rescue.go); it lives across tables.
	Budget *Budget
}

// Pick chooses the backend with the fewest outstanding requests, ties
// broken by a random starting point, skipping ejected backends and exclude
// (a failed try). With more than MaxEjected ejected it routes to all (panic
// routing). nil when empty. One pass, no allocation: 0.5 µs at 100
// instances (BenchmarkPickCost); balance_test.go measures why this beats
// the power of two choices and random.
func (g *Group) Pick(exclude *Backend) *Backend {
	n := len(g.Backends)
	if n == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	start := rand.IntN(n)
	var best, bestAll *Backend
	ejected := 0
	for i := 0; i < n; i++ {
		b := g.Backends[(start+i)%n]
		if b == exclude {
			continue
		}
		if bestAll == nil || b.Inflight.Load() < bestAll.Inflight.Load() {
			bestAll = b
		}
		if b.Ejected(now) {
			ejected++
			continue
		}
		if best == nil || b.Inflight.Load() < best.Inflight.Load() {
			best = b
		}
	}
	if ejected > g.MaxEjected {
		best = bestAll // panic routing: the ejected ones count too
	}
	if best == nil && exclude != nil {
		return exclude // nothing else: try it again
	}
	return best
}

// Service is one service's part of a table.
type Service struct {
	Name string
	// Groups take traffic (weight > 0, and instances in the table while
	// any weighted group has some); All holds every group of the route.
	Groups []*Group
	All    map[string]*Group
	// Fallback rescues the requests that fail on the other weighted
	// groups (nil: none); see rescue.go.
	Fallback *Group
	// RetryNonIdempotent: the spec lets a request of any method that got
	// a 5xx be rescued, not only an idempotent one.
	RetryNonIdempotent bool
	// Protocol is what the instances speak (spec.Protocol*; "" is
	// HTTP/1.1).
	Protocol string
	cum      []int
	total    int
	// Revision is the routes revision this was built from.
	Revision uint64
	// SlotCount is a stateful service's number of slots (0: not
	// stateful), and bySlot its up instances by slot, in any group of the
	// route: a slot runs in the old version's group or the new one's.
	SlotCount int
	bySlot    map[string][]*Backend
}

// BySlot returns the up instances of a stateful service's slot other than
// exclude (a failed try), those not ejected first: usually one, two while
// discovery catches up with a replacement. An ejected one is still
// returned, last: a slot has no other instance to send its keys to, and
// the caller's request must reach it (and its failures the samples) rather
// than wait out the ejection.
func (s *Service) BySlot(slot string, exclude *Backend) []*Backend {
	now := time.Now().UnixNano()
	var out, ejected []*Backend
	for _, b := range s.bySlot[slot] {
		switch {
		case b == exclude:
		case b.Ejected(now):
			ejected = append(ejected, b)
		default:
			out = append(out, b)
		}
	}
	return append(out, ejected...)
}

// PickGroup chooses a group by weight; nil when no group has weight.
func (s *Service) PickGroup() *Group {
	if s.total == 0 {
		return nil
	}
	r := rand.IntN(s.total)
	for i, c := range s.cum {
		if r < c {
			return s.Groups[i]
		}
	}
	return s.Groups[len(s.Groups)-1]
}

// Table routes every service.
type Table struct {
	byHost   map[string]*Service
	Services map[string]*Service
}

// Lookup finds the service of a Host header: the service name,
// <service>.localhost, or a host name from its spec, in any spelling that
// normalizes to it (hostname.Normalize: case, a port, a trailing dot,
// Unicode look-alikes), as the spec's claim was checked.
func (t *Table) Lookup(host string) *Service {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if s := t.byHost[host]; s != nil {
		return s
	}
	return t.normalized(host)
}

// LookupBytes is Lookup for a Host header in bytes; it allocates nothing
// when the host is found as given.
func (t *Table) LookupBytes(host []byte) *Service {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
		host = host[:i]
	}
	if s := t.byHost[string(host)]; s != nil {
		return s
	}
	return t.normalized(string(host))
}

// normalized looks host up in its one form (nil when it is no host name).
// A host already in that form (lower-case ASCII, no trailing dot: IDNA
// leaves it as it is, or refuses it) missed already: no second look, and
// no IDNA work on the request path for an unknown host.
func (t *Table) normalized(host string) *Service {
	if inOneForm(host) {
		return nil
	}
	n, err := hostname.Normalize(host)
	if err != nil {
		return nil
	}
	return t.byHost[n]
}

// inOneForm reports whether host is lower-case ASCII without a trailing dot.
func inOneForm(host string) bool {
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 0x80 || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return len(host) == 0 || host[len(host)-1] != '.'
}

// Registry keeps Backends across tables.
type Registry struct {
	mu       sync.Mutex
	backends map[string]*Backend
	budgets  map[string]*Budget // by group
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{backends: map[string]*Backend{}, budgets: map[string]*Budget{}}
}

func (r *Registry) budget(group string) *Budget {
	b := r.budgets[group]
	if b == nil {
		b = NewBudget()
		r.budgets[group] = b
	}
	return b
}

func (r *Registry) backend(e discovery.Entry) *Backend {
	key := e.ID + "@" + e.Addr()
	if b, ok := r.backends[key]; ok {
		return b
	}
	b := &Backend{ID: e.ID, Service: e.Service, Group: e.Group, Addr: e.Address, Slot: e.Slot}
	r.backends[key] = b
	return b
}

// Forget drops a gone backend with no request in flight, once its last
// counts are published: the registry and /metrics hold only instances that
// exist, or whose last requests are still to be reported. It reports
// whether b was dropped.
func (r *Registry) Forget(b *Backend) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := b.ID + "@" + b.Addr
	if r.backends[key] != b || !b.gone.Load() || b.Inflight.Load() != 0 {
		return false
	}
	delete(r.backends, key)
	return true
}

// Backends returns every backend known, for metrics.
func (r *Registry) Backends() []*Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Backend, 0, len(r.backends))
	for _, b := range r.backends {
		out = append(out, b)
	}
	return out
}

// Input is what a table is built from.
type Input struct {
	Routes    map[string]routes.Route
	Revisions map[string]uint64
	Instances map[string]discovery.Entry // by key
	Hostnames map[string][]string        // spec host names by service
	// RetryNonIdempotent names the services whose specs let any method be
	// rescued (traffic.retry_non_idempotent).
	RetryNonIdempotent map[string]bool
	// Protocols names what each service's instances speak (the spec's
	// protocol).
	Protocols map[string]string
	// MaxEjectedShare of a group's backends may be ejected (default 0.5).
	MaxEjectedShare float64
	// Settling names the services whose route changed a moment ago: while
	// it settles, a route whose weighted groups have no instance in the
	// table is served by its previous group (see Build).
	Settling map[string]bool
}

// Build builds a table. Only up instances are routed to.
func (r *Registry) Build(in Input) *Table {
	r.mu.Lock()
	defer r.mu.Unlock()
	share := in.MaxEjectedShare
	if share == 0 {
		share = 0.5
	}
	byGroup := map[string][]*Backend{}
	listed := make(map[string]bool, len(in.Instances))
	slotCount := map[string]int{}
	for _, e := range in.Instances {
		listed[e.ID+"@"+e.Addr()] = true
		slotCount[e.Service] = max(slotCount[e.Service], e.SlotCount)
		if e.State == discovery.StateUp {
			byGroup[e.Group] = append(byGroup[e.Group], r.backend(e))
		}
	}
	for key, b := range r.backends {
		b.gone.Store(!listed[key])
	}
	t := &Table{byHost: map[string]*Service{}, Services: map[string]*Service{}}
	claims := Claims(in.Routes, in.Hostnames)
	for name, rt := range in.Routes {
		s := &Service{Name: name, All: map[string]*Group{}, Revision: in.Revisions[name], RetryNonIdempotent: in.RetryNonIdempotent[name], Protocol: in.Protocols[name],
			SlotCount: slotCount[name]}
		// a group with weight but no instance in this table (the instances
		// not seen yet, or all gone) gives its share to the weighted groups
		// that have some, rather than failing it. When none has any and the
		// route has just changed, the route's previous group takes it if it
		// has instances here (this router's watcher of instances is behind
		// during a switch: the group the traffic left is alive, and better
		// than a 502); otherwise the service answers "no healthy instance",
		// which users and the watchdog see.
		served := false
		for _, gname := range rt.Groups() {
			served = served || (rt.Weights[gname] > 0 && len(byGroup[gname]) > 0)
		}
		fallback := ""
		if !served && in.Settling[name] && rt.Previous != "" && len(byGroup[rt.Previous]) > 0 {
			fallback = rt.Previous
		}
		for _, gname := range rt.Groups() {
			bs := byGroup[gname]
			sort.Slice(bs, func(i, j int) bool { return bs[i].ID < bs[j].ID })
			g := &Group{Name: gname, Weight: rt.Weights[gname], Backends: bs, MaxEjected: int(float64(len(bs)) * share), Budget: r.budget(gname)}
			s.All[gname] = g
			for _, b := range bs {
				if b.Slot != "" {
					if s.bySlot == nil {
						s.bySlot = map[string][]*Backend{}
					}
					s.bySlot[b.Slot] = append(s.bySlot[b.Slot], b)
				}
			}
			w := g.Weight
			switch {
			case fallback != "" && gname == fallback:
				w = 1
			case fallback != "" || (served && len(bs) == 0):
				w = 0
			}
			if w > 0 {
				s.Groups = append(s.Groups, g)
				s.total += w
				s.cum = append(s.cum, s.total)
			}
		}
		s.Fallback = fallbackOf(s, rt)
		t.Services[name] = s
		for _, h := range hostsOf(name, in.Hostnames[name]) {
			if len(claims[h]) == 1 {
				t.byHost[h] = s
			}
		}
	}
	return t
}

// fallbackOf is the group that rescues the service's failed requests (see
// rescue.go), if it has instances in the table.
func fallbackOf(s *Service, rt routes.Route) *Group {
	var f *Group
	active := false
	for _, g := range s.Groups {
		active = active || g.Name == rt.Active
		if g.Name != rt.Active && g.Name != rt.Previous {
			f = s.All[rt.Active] // a canary: production rescues
			break
		}
	}
	if f == nil && active && rt.Previous != "" {
		// one group takes all (or all but the bake's reference slice, which
		// the previous group keeps): the previous one, while alive
		f = s.All[rt.Previous]
	}
	if f == nil || len(f.Backends) == 0 {
		return nil
	}
	return f
}

// hostsOf is every name a service is routed by, each in the one form
// Lookup finds it in (hostname.Normalize); a spec host name that does not
// normalize names nothing.
func hostsOf(name string, hostnames []string) []string {
	hs := []string{name, name + ".localhost"}
	for _, h := range hostnames {
		if n, err := hostname.Normalize(h); err == nil {
			hs = append(hs, n)
		}
	}
	return hs
}

// Claims maps every host name to the services that claim it (their name,
// name.localhost and their spec's hostnames). A name claimed by more than
// one service is routed to none of them: never map order deciding who gets
// another team's traffic. Specs are refused such names when applied; this
// holds for specs that reach the bucket anyway.
func Claims(services map[string]routes.Route, hostnames map[string][]string) map[string][]string {
	claims := map[string][]string{}
	for name := range services {
		for _, h := range hostsOf(name, hostnames[name]) {
			if !slices.Contains(claims[h], name) {
				claims[h] = append(claims[h], name)
			}
		}
	}
	return claims
}

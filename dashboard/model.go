package dashboard

import (
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// Bounds of what the dashboard keeps in memory.
const (
	maxEvents   = 500              // recent events, all services
	maxReleases = 20               // releases shown per service
	maxKills    = 20               // kills shown per service
	window      = 10 * time.Second // the live figures' window
	// the overview's sparklines: request rate and error rate per step, the
	// last sparkSteps steps
	sparkStep  = 10 * time.Second
	sparkSteps = 30
)

// model is the mesh as the page sees it, fed by the watchers.
type model struct {
	mu        sync.Mutex
	dirty     bool
	specs     map[string]spec.Service
	routes    map[string]routes.Route
	instances map[string]discovery.Entry
	releases  map[string]release.Record
	events    []EventView
	kills     map[string][]EventView
	groups    map[string]*groupStats            // "service/group"
	spark     map[string]map[int64]*sparkBucket // service → step (unix / sparkStep) → counts
}

// sparkBucket is one step of a service's traffic, every group together.
type sparkBucket struct{ requests, errors uint64 }

func newModel() *model {
	return &model{dirty: true, specs: map[string]spec.Service{}, routes: map[string]routes.Route{}, instances: map[string]discovery.Entry{},
		releases: map[string]release.Record{}, kills: map[string][]EventView{}, groups: map[string]*groupStats{}, spark: map[string]map[int64]*sparkBucket{}}
}

func (m *model) takeDirty() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dirty
	m.dirty = false
	return d
}

// entry applies a bucket entry (a put or a delete); what does not decode
// or validate is ignored, as the services ignore it.
func (m *model) entry(bucket string, e jetstream.KeyValueEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dirty = true
	gone := e.Operation() != jetstream.KeyValuePut
	key := e.Key()
	switch bucket {
	case topology.BucketServices:
		if gone {
			delete(m.specs, key)
		} else if s, err := spec.Decode(e.Value()); err == nil {
			m.specs[key] = s
		}
	case topology.BucketRoutes:
		if gone {
			delete(m.routes, key)
		} else if r, err := routes.Decode(e.Value()); err == nil {
			m.routes[key] = r
		}
	case topology.BucketInstances:
		if gone {
			delete(m.instances, key)
		} else if d, err := discovery.Decode(e.Value()); err == nil {
			m.instances[key] = d
		}
	case topology.BucketReleases:
		if !strings.HasPrefix(key, release.RecordKey("")) {
			return // locks and counters
		}
		id := strings.TrimPrefix(key, release.RecordKey(""))
		var r release.Record
		if gone {
			delete(m.releases, id)
		} else if json.Unmarshal(e.Value(), &r) == nil && r.ID == id {
			r.Checkpoint, r.BakeCheckpoint = nil, nil // evidence the page does not draw
			m.releases[id] = r
		}
	}
}

// EventView is an event as the page lists it.
type EventView struct {
	ID      string          `json:"id"`
	Time    time.Time       `json:"time"`
	Kind    string          `json:"kind"` // the type without io.redblack.
	Service string          `json:"service"`
	Release string          `json:"release,omitempty"`
	Source  string          `json:"source"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func viewOf(ev events.Event) EventView {
	return EventView{ID: ev.ID, Time: ev.Time, Kind: strings.TrimPrefix(ev.Type, events.TypePrefix), Service: ev.Subject,
		Release: ev.ReleaseID, Source: ev.Source, Data: ev.Data}
}

// event keeps a release, fleet or chaos event.
func (m *model) event(_ string, data []byte) {
	ev, err := events.Decode(data)
	if err != nil {
		return
	}
	k, ok := ev.Kind()
	if !ok {
		return
	}
	v := viewOf(ev)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dirty = true
	m.events = append(m.events, v)
	if len(m.events) > maxEvents {
		m.events = append(m.events[:0:0], m.events[len(m.events)-maxEvents:]...)
	}
	if k == events.ChaosTerminated {
		ks := append(m.kills[v.Service], v)
		if len(ks) > maxKills {
			ks = ks[len(ks)-maxKills:]
		}
		m.kills[v.Service] = ks
	}
}

// sample adds a metrics sample to its group's figures.
func (m *model) sample(_ string, data []byte) {
	s, err := metrics.Decode(data)
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := s.Service + "/" + s.Group
	g := m.groups[k]
	if g == nil {
		g = &groupStats{}
		m.groups[k] = g
	}
	if g.add(s) {
		sp := m.spark[s.Service]
		if sp == nil {
			sp = map[int64]*sparkBucket{}
			m.spark[s.Service] = sp
		}
		step := s.End.Unix() / int64(sparkStep/time.Second)
		b := sp[step]
		if b == nil {
			b = &sparkBucket{}
			sp[step] = b
			for k := range sp { // bounded: only the steps drawn
				if k <= step-sparkSteps {
					delete(sp, k)
				}
			}
		}
		b.requests += s.Requests
		b.errors += s.Errors()
	}
	m.dirty = true
}

// groupStats are a group's figures: everything since the dashboard first
// saw it, and the samples of the last window.
type groupStats struct {
	bounds   []int64
	total    totals
	recent   []metrics.Sample
	lastSeen time.Time
}

type totals struct {
	Requests, Errors uint64
	Latency          []uint64
}

func (t *totals) add(s metrics.Sample) {
	t.Requests += s.Requests
	t.Errors += s.Errors()
	if len(t.Latency) != len(s.Latency) {
		t.Latency = make([]uint64, len(s.Latency))
	}
	for i, n := range s.Latency {
		t.Latency[i] += n
	}
}

// add takes a sample into the group's figures; false: its histogram does
// not match its bounds, and it was left out.
func (g *groupStats) add(s metrics.Sample) bool {
	if len(s.BucketsMicros) == 0 || len(s.Latency) != len(s.BucketsMicros)+1 {
		return false
	}
	if len(g.bounds) != len(s.BucketsMicros) {
		g.bounds, g.total = s.BucketsMicros, totals{}
	}
	g.total.add(s)
	g.recent = append(g.recent, s)
	cut := s.End.Add(-window)
	i := 0
	for i < len(g.recent) && g.recent[i].End.Before(cut) {
		i++
	}
	g.recent = g.recent[i:]
	if s.End.After(g.lastSeen) {
		g.lastSeen = s.End
	}
	return true
}

// Figures are a group's request count, errors, error rate and latency.
type Figures struct {
	Requests  uint64  `json:"requests"`
	Errors    uint64  `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	// CDF is the latency distribution: [ms, share of requests at most].
	CDF [][2]float64 `json:"cdf,omitempty"`
}

func figures(bounds []int64, t totals, cdf bool) Figures {
	f := Figures{Requests: t.Requests, Errors: t.Errors}
	if t.Requests > 0 {
		f.ErrorRate = float64(t.Errors) / float64(t.Requests)
	}
	var n uint64
	for _, c := range t.Latency {
		n += c
	}
	if n == 0 {
		return f
	}
	f.P50Ms = metrics.HistQuantile(bounds, t.Latency, 0.5) / 1000
	f.P99Ms = metrics.HistQuantile(bounds, t.Latency, 0.99) / 1000
	if cdf {
		var cum uint64
		for i, b := range bounds {
			cum += t.Latency[i]
			if t.Latency[i] > 0 || (cum > 0 && cum < n) {
				f.CDF = append(f.CDF, [2]float64{float64(b) / 1000, float64(cum) / float64(n)})
			}
			if cum == n {
				break
			}
		}
	}
	return f
}

func (g *groupStats) live() Figures {
	var t totals
	for _, s := range g.recent {
		t.add(s)
	}
	return figures(g.bounds, t, false)
}

// State is what the page draws.
type State struct {
	At       time.Time      `json:"at"`
	Services []ServiceState `json:"services"`
	Events   []EventView    `json:"events"`
}

// ServiceState is one service.
type ServiceState struct {
	Name     string `json:"name"`
	Owner    string `json:"owner"`
	Capacity int    `json:"capacity"`
	Active   string `json:"active"`
	// Previous is the group kept for a rollback ("" for none).
	Previous string         `json:"previous,omitempty"`
	Groups   []GroupState   `json:"groups"`
	Current  *ReleaseState  `json:"current,omitempty"` // in flight, or the last
	Releases []ReleaseState `json:"releases"`
	Kills    []EventView    `json:"kills"`
	// Spark is the service's traffic, oldest first: one point per
	// sparkStep, every group together (a step with no sample is 0).
	Spark []SparkPoint `json:"spark"`
}

// SparkPoint is one step of a service's traffic.
type SparkPoint struct {
	At        time.Time `json:"at"`
	Rate      float64   `json:"rate"` // requests per second
	ErrorRate float64   `json:"error_rate"`
}

// GroupState is one server group.
type GroupState struct {
	Name      string          `json:"name"`
	Version   string          `json:"version"`
	Weight    int             `json:"weight"` // per mille
	Instances []InstanceState `json:"instances"`
	Live      *Figures        `json:"live,omitempty"`
}

// InstanceState is one instance.
type InstanceState struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Address string `json:"address"`
}

// ReleaseState is one release: its phases, its verdicts, and while it
// runs the figures its phase is judged on.
type ReleaseState struct {
	ID       string               `json:"id"`
	Version  string               `json:"version"`
	Group    string               `json:"group"`
	Previous string               `json:"previous,omitempty"`
	Phase    string               `json:"phase"`
	Final    bool                 `json:"final"`
	Reason   string               `json:"reason,omitempty"`
	By       string               `json:"requested_by,omitempty"`
	History  []release.Transition `json:"history"`
	Report   *events.CanaryResult `json:"report,omitempty"`
	// Canary: the baseline's and the canary's figures since they got
	// traffic, with their latency distributions.
	Baseline *Figures `json:"baseline,omitempty"`
	Canary   *Figures `json:"canary,omitempty"`
	// MinSamples is the requests per group the judge needs before it
	// judges a metric: below it, the canary is warming up.
	MinSamples int `json:"min_samples,omitempty"`
	// Bake: the new group's figures of the last window against the limits.
	Bake *BakeState `json:"bake,omitempty"`
}

// BakeState is the bake's live figures and limits.
type BakeState struct {
	Live            Figures `json:"live"`
	MaxErrorRate    float64 `json:"max_error_rate"`
	MaxLatencyRatio float64 `json:"max_latency_ratio"`
	OldP99Ms        float64 `json:"old_p99_ms"`
	P99LimitMs      float64 `json:"p99_limit_ms"`
}

func (m *model) snapshot(now time.Time) State {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := State{At: now.UTC(), Services: []ServiceState{}, Events: append([]EventView{}, m.events...)}
	bySvc := map[string][]release.Record{}
	for _, r := range m.releases {
		bySvc[r.Service] = append(bySvc[r.Service], r)
	}
	for _, name := range sortedKeys(m.specs) {
		sp := m.specs[name]
		rt := m.routes[name]
		ss := ServiceState{Name: name, Owner: sp.Owner, Capacity: sp.Capacity, Active: rt.Active, Previous: rt.Previous, Kills: append([]EventView{}, m.kills[name]...),
			Groups: []GroupState{}, Releases: []ReleaseState{}}
		groups := map[string]*GroupState{}
		for g, w := range rt.Weights {
			groups[g] = &GroupState{Name: g, Weight: w, Instances: []InstanceState{}}
		}
		for _, e := range m.instances {
			if e.Service != name {
				continue
			}
			g := groups[e.Group]
			if g == nil {
				g = &GroupState{Name: e.Group, Instances: []InstanceState{}}
				groups[e.Group] = g
			}
			g.Version = e.Version
			g.Instances = append(g.Instances, InstanceState{ID: e.ID, State: e.State, Address: e.Address})
		}
		for _, gname := range sortedKeys(groups) {
			g := groups[gname]
			if len(g.Instances) == 0 && g.Weight == 0 {
				continue // destroyed: the route keeps it until its next change
			}
			sort.Slice(g.Instances, func(i, j int) bool { return g.Instances[i].ID < g.Instances[j].ID })
			if gs := m.groups[name+"/"+gname]; gs != nil && now.Sub(gs.lastSeen) < window {
				f := gs.live()
				g.Live = &f
			}
			ss.Groups = append(ss.Groups, *g)
		}
		recs := bySvc[name]
		sort.Slice(recs, func(i, j int) bool { return recs[i].Sequence > recs[j].Sequence })
		if len(recs) > maxReleases {
			recs = recs[:maxReleases]
		}
		for i, r := range recs {
			rs := m.release(r, sp)
			if i == 0 {
				cur := rs
				ss.Current = &cur
			}
			ss.Releases = append(ss.Releases, rs)
		}
		ss.Spark = m.sparkOf(name, now)
		st.Services = append(st.Services, ss)
	}
	return st
}

// sparkOf is a service's traffic over the last sparkSteps steps before
// now's (the step in progress is left out: it is not complete).
func (m *model) sparkOf(service string, now time.Time) []SparkPoint {
	per := int64(sparkStep / time.Second)
	last := now.Unix()/per - 1
	out := make([]SparkPoint, 0, sparkSteps)
	for step := last - sparkSteps + 1; step <= last; step++ {
		p := SparkPoint{At: time.Unix(step*per, 0).UTC()}
		if b := m.spark[service][step]; b != nil && b.requests > 0 {
			p.Rate = float64(b.requests) / sparkStep.Seconds()
			p.ErrorRate = float64(b.errors) / float64(b.requests)
		}
		out = append(out, p)
	}
	return out
}

func (m *model) release(r release.Record, sp spec.Service) ReleaseState {
	rs := ReleaseState{ID: r.ID, Version: r.Version, Group: r.Group, Previous: r.Previous, Phase: string(r.Phase), Final: r.Phase.Final(),
		Reason: r.Reason, By: r.RequestedBy, History: r.History, Report: r.Report, MinSamples: sp.Strategy.Canary.MinSamples}
	if r.Baseline != "" {
		if g := m.groups[r.Service+"/"+r.Baseline]; g != nil {
			f := figures(g.bounds, g.total, true)
			rs.Baseline = &f
		}
		if g := m.groups[r.Service+"/"+r.Canary]; g != nil {
			f := figures(g.bounds, g.total, true)
			rs.Canary = &f
		}
	}
	if r.Phase == release.PhaseBaking {
		b := &BakeState{MaxErrorRate: sp.Strategy.Bake.MaxErrorRate, MaxLatencyRatio: sp.Strategy.Bake.MaxLatencyRatio}
		if g := m.groups[r.Service+"/"+r.Group]; g != nil {
			b.Live = g.live()
		}
		if old := m.groups[r.Service+"/"+r.Previous]; old != nil {
			b.OldP99Ms = figures(old.bounds, old.total, false).P99Ms
			b.P99LimitMs = b.OldP99Ms * b.MaxLatencyRatio
		}
		rs.Bake = b
	}
	return rs
}

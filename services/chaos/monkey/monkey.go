package monkey

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// Source is the CloudEvents source of the monkey's events.
const Source = "redblack/chaos"

// ConfigKey holds the global Config in the chaos bucket.
const ConfigKey = "config"

// KillKey holds the last kill of a schedule unit: kill.<unit>.
func KillKey(unit string) string { return "kill." + unit }

// Record is the last kill of a unit, written with compare-and-set.
type Record struct {
	At       time.Time `json:"at"`
	Group    string    `json:"group"`
	Instance string    `json:"instance"`
}

// Results of an attempt.
const (
	Terminated     = "terminated"
	WouldTerminate = "would_terminate"
	Skipped        = "skipped"
)

// Outcome is what an attempt did.
type Outcome struct {
	Service  string `json:"service"`
	Group    string `json:"group,omitempty"`
	Instance string `json:"instance,omitempty"`
	Result   string `json:"result"`
	Reason   string `json:"reason,omitempty"`
}

// Monkey carries out kill attempts. Several monkeys (chaos service
// instances) may race on the same buckets.
type Monkey struct {
	JS                                     jetstream.JetStream
	Chaos, Services, Instances, Routes, KV jetstream.KeyValue // KV: releases
	Now                                    func() time.Time
	Log                                    zerolog.Logger

	mu  sync.Mutex
	rnd *rand.Rand
}

// Open binds a monkey to the topology's buckets.
func Open(ctx context.Context, js jetstream.JetStream, now func() time.Time, log zerolog.Logger) (*Monkey, error) {
	m := &Monkey{JS: js, Now: now, Log: log, rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))}
	for name, kv := range map[string]*jetstream.KeyValue{topology.BucketChaos: &m.Chaos, topology.BucketServices: &m.Services,
		topology.BucketInstances: &m.Instances, topology.BucketRoutes: &m.Routes, topology.BucketReleases: &m.KV} {
		var err error
		if *kv, err = natsx.Bucket(ctx, js, name); err != nil {
			return nil, fmt.Errorf("monkey: bucket %s: %w", name, err)
		}
	}
	return m, nil
}

// GetConfig reads the global config (the default if none is stored).
func GetConfig(ctx context.Context, kv jetstream.KeyValue) (Config, uint64, error) {
	c := DefaultConfig()
	e, err := kv.Get(ctx, ConfigKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, 0, nil
	}
	if err != nil {
		return c, 0, err
	}
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return c, 0, fmt.Errorf("monkey: config is corrupt: %w", err)
	}
	return c, e.Revision(), nil
}

// ErrConfigChanged: the stored config is not the revision PutConfig was
// given; read it again and decide again.
var ErrConfigChanged = errors.New("monkey: chaos config changed meanwhile")

// PutConfig validates c and stores it as the global config, with
// compare-and-set on rev (GetConfig's; 0: none is stored). It is the one
// writer of the config; the encoded config is returned.
func PutConfig(ctx context.Context, kv jetstream.KeyValue, c Config, rev uint64) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("chaos config: %w (nothing stored)", err)
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	var err error
	if rev == 0 {
		_, err = kv.Create(ctx, ConfigKey, b)
	} else {
		_, err = kv.Update(ctx, ConfigKey, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil, ErrConfigChanged
	}
	if err != nil {
		return nil, fmt.Errorf("monkey: store the chaos config: %w", err)
	}
	return b, nil
}

// Attempt tries to kill an instance of service (of group when given; it
// must be the group that takes traffic). Checks, in order: enabled
// (globally and for the service) and not paused; the outage check; the
// victim; leashed (then only would_terminate); min time between kills (a
// compare-and-set on the unit's kill record); the tracker event
// terminating, acknowledged by the stream; then the kill through the
// provisioner. Every attempt ends in one event. An error means it could not
// be carried out (NATS unavailable): nothing was killed.
func (m *Monkey) Attempt(ctx context.Context, service, group, why string) (Outcome, error) {
	out := Outcome{Service: service, Group: group}
	skip := func(format string, args ...any) (Outcome, error) {
		out.Result, out.Reason = Skipped, fmt.Sprintf(format, args...)
		return out, m.emit(ctx, events.ChaosSkipped, events.NewID(), out, false)
	}
	cfg, _, err := GetConfig(ctx, m.Chaos)
	if err != nil {
		return out, err
	}
	svc, err := spec.Get(ctx, m.Services, service)
	if errors.Is(err, spec.ErrNotFound) {
		return skip("unknown service %q", service)
	}
	if err != nil {
		return out, err
	}
	switch {
	case !cfg.Enabled:
		return skip("chaos is disabled globally")
	case cfg.Paused:
		return skip("chaos is paused")
	case !svc.Chaos.Enabled:
		return skip("chaos is not enabled for %s", service)
	}
	// the outage check
	store := release.Store{KV: m.KV}
	if l, _, err := store.Lock(ctx, service); err == nil {
		return skip("release %s of %s is in flight", l.Release, service)
	} else if !errors.Is(err, release.ErrNotFound) {
		return out, err
	}
	rt, _, err := routes.Get(ctx, m.Routes, service)
	if err != nil && !errors.Is(err, routes.ErrNotFound) {
		return out, err
	}
	active := rt.Active
	if active == "" || rt.Weights[active] == 0 {
		return skip("no server group of %s takes traffic", service)
	}
	if group != "" && group != active {
		return skip("%s does not take traffic: victims come only from %s", group, active)
	}
	out.Group = active
	up, err := discovery.Up(ctx, m.Instances, service, active)
	if err != nil {
		return out, err
	}
	if len(up) < svc.Capacity {
		return skip("%s has %d healthy instances, fewer than the capacity %d", active, len(up), svc.Capacity)
	}
	if rate, n := m.errorRate(ctx, service, active); n > 0 && rate > cfg.MaxErrorRate {
		return skip("%s error rate %.1f%% over the last 10s is above %.1f%%", active, 100*rate, 100*cfg.MaxErrorRate)
	}
	if Excepted(svc.Chaos, active) {
		return skip("%s matches an exception of %s", active, service)
	}
	m.mu.Lock()
	victim := up[m.rnd.IntN(len(up))]
	m.mu.Unlock()
	out.Instance = victim
	if cfg.Leashed {
		out.Result, out.Reason = WouldTerminate, "leashed: "+why
		return out, m.emit(ctx, events.ChaosWouldTerminate, events.NewID(), out, true)
	}
	// min time between kills, atomically with the kill record
	unit := service
	if svc.Chaos.Grouping == "group" {
		unit = service + "." + active
	}
	now := m.Now().UTC()
	rec, err := m.claim(ctx, unit, Record{At: now, Group: active, Instance: victim}, MinGap(svc.Chaos.MinTimeBetweenKills))
	if err != nil {
		var gap *gapError
		if errors.As(err, &gap) {
			return skip("%s", gap.Error())
		}
		return out, err
	}
	// the tracker event, acknowledged, before the kill
	id := fmt.Sprintf("chaos:%s:%d", unit, rec.At.UnixNano())
	out.Reason = why
	if err := m.emit(ctx, events.ChaosTerminating, id+":terminating", out, false); err != nil {
		return out, fmt.Errorf("monkey: tracker event not stored, kill aborted: %w", err)
	}
	gone, err := m.JS.Conn().SubscribeSync(events.InstanceTerminated.Subject(service))
	if err != nil {
		return out, err
	}
	if err := natsx.Emit(ctx, m.JS, Source, id+":terminate", events.InstanceTerminate, service, "",
		events.InstanceCommand{Service: service, Group: active, Instance: victim, Reason: "chaos monkey: " + why}); err != nil {
		_ = gone.Unsubscribe()
		return out, err
	}
	out.Result = Terminated
	go m.confirm(gone, id, out) // terminated once the provisioner reports it
	m.Log.Info().Str(logging.FieldService, service).Str(logging.FieldServerGroup, active).Str("instance", victim).Str("reason", why).Msg("chaos monkey kills")
	return out, nil
}

// confirm publishes chaos.<service>.terminated once the provisioner
// reports the victim terminated (the group then replaces it).
func (m *Monkey) confirm(gone *nats.Subscription, id string, out Outcome) {
	defer gone.Unsubscribe()
	deadline := time.Now().Add(15 * time.Second)
	for {
		msg, err := gone.NextMsg(time.Until(deadline))
		if err != nil {
			m.Log.Warn().Str(logging.FieldService, out.Service).Str("instance", out.Instance).Msg("chaos: no termination reported within 15s")
			return
		}
		ev, err := events.Decode(msg.Data)
		var i events.Instance
		if err != nil || ev.DecodeData(&i) != nil || i.Instance != out.Instance {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.emit(ctx, events.ChaosTerminated, id+":terminated", out, false); err != nil {
			m.Log.Warn().Err(err).Msg("chaos: publish terminated")
		}
		return
	}
}

// gapError: the unit was killed too recently, or another monkey won.
type gapError struct{ msg string }

func (e *gapError) Error() string { return e.msg }

// claim writes the unit's kill record unless the last one is within gap; a
// concurrent claim loses the compare-and-set.
func (m *Monkey) claim(ctx context.Context, unit string, r Record, gap time.Duration) (Record, error) {
	b, _ := json.Marshal(r)
	e, err := m.Chaos.Get(ctx, KillKey(unit))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = m.Chaos.Create(ctx, KillKey(unit), b)
	case err != nil:
		return r, err
	default:
		var last Record
		if json.Unmarshal(e.Value(), &last) == nil && r.At.Sub(last.At) < gap {
			return r, &gapError{fmt.Sprintf("min time between kills (%s) not passed: last kill of %s at %s", gap, last.Instance, last.At.Format(time.RFC3339))}
		}
		_, err = m.Chaos.Update(ctx, KillKey(unit), b, e.Revision())
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return r, &gapError{"another monkey killed first"}
	}
	return r, err
}

// errorRate of the group over the router's samples of the last 10 s (none
// if the router has published none).
func (m *Monkey) errorRate(ctx context.Context, service, group string) (float64, uint64) {
	var t metrics.Totals
	st, err := m.JS.Stream(ctx, topology.StreamMetrics)
	if err != nil {
		return 0, 0
	}
	raw, err := st.GetLastMsgForSubject(ctx, subjects.GroupSamples(service, group))
	if err != nil {
		return 0, 0
	}
	last, err := metrics.Decode(raw.Data)
	if err != nil || time.Since(last.End) > 10*time.Second {
		return 0, 0
	}
	fctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = metrics.Follow(fctx, m.JS, topology.StreamMetrics, service, []string{group}, last.End.Add(-10*time.Second), nil, func(s metrics.Sample) bool {
		t.Add(s)
		return s.End.Before(last.End)
	})
	return t.ErrorRate(), t.Requests
}

func (m *Monkey) emit(ctx context.Context, k events.Kind, id string, o Outcome, leashed bool) error {
	return natsx.Emit(ctx, m.JS, Source, id, k, o.Service, "",
		events.Chaos{Service: o.Service, Group: o.Group, Instance: o.Instance, Reason: o.Reason, Leashed: leashed})
}

package monkey_test

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/services/chaos/monkey"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
)

// TestKillsPerGroupMatchTheMean: over 10,000 simulated work days (plus the
// weekends between them) each group is killed on about 1/mean of its work
// days, never on a weekend or holiday and never outside the window.
func TestKillsPerGroupMatchTheMean(t *testing.T) {
	cfg := monkey.DefaultConfig()
	cfg.Holidays = []string{"2027-12-24", "2027-12-27"}
	start := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, mean := range []float64{1, 2, 5} {
		for _, group := range []string{"hello-v001", "hello-v002", "other-v010"} {
			kills, workDays := 0, 0
			for d := start; workDays < 10000; d = d.Add(24 * time.Hour) {
				k, ok := monkey.PlanDay(cfg, 1, "hello", group, mean, d)
				if !cfg.WorkDay(d) {
					if ok {
						t.Fatalf("kill planned on %s, not a work day", d.Format("Mon 2006-01-02"))
					}
					continue
				}
				workDays++
				if !ok {
					continue
				}
				kills++
				if !cfg.InWindow(k.At) || k.At.Hour() < 9 || k.At.Hour() >= 15 || k.At.Second() != 0 {
					t.Fatalf("kill at %s, outside 09:00–15:00", k.At)
				}
			}
			p := 1 / mean
			want, sd := p*10000, math.Sqrt(10000*p*(1-p))
			if math.Abs(float64(kills)-want) > 4*sd+0.5 {
				t.Errorf("mean %v, %s: %d kills in 10,000 work days; want %.0f ± %.0f", mean, group, kills, want, 4*sd)
			}
		}
	}
	// the same unit and day always plan the same kill: every instance agrees
	a, _ := monkey.PlanDay(cfg, 1, "hello", "hello", 1, start.Add(72*time.Hour))
	b, _ := monkey.PlanDay(cfg, 1, "hello", "hello", 1, start.Add(72*time.Hour))
	if !a.At.Equal(b.At) {
		t.Fatal("plans differ")
	}
}

func TestFastModeRate(t *testing.T) {
	kills := 0
	base := time.Unix(1_800_000_000, 0)
	for i := range 10000 {
		p := base.Add(time.Duration(i) * monkey.FastPeriod)
		if k, ok := monkey.PlanFast(1, "hello", "hello", 4*time.Second, p); ok {
			kills++
			if k.At.Before(p) || !k.At.Before(p.Add(monkey.FastPeriod)) {
				t.Fatalf("kill at %s outside its period %s", k.At, p)
			}
		}
	}
	if kills < 2500-200 || kills > 2500+200 { // p = 1/4, sd 43
		t.Fatalf("%d kills in 10,000 s at a mean of 4 s", kills)
	}
}

func TestConfigValidate(t *testing.T) {
	c := monkey.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for field, mut := range map[string]func(*monkey.Config){
		"window.start":     func(c *monkey.Config) { c.Window.Start = "9am" },
		"window: end":      func(c *monkey.Config) { c.Window.End = "08:00" },
		"window.time_zone": func(c *monkey.Config) { c.Window.TimeZone = "Mars/Olympus" },
		"holidays":         func(c *monkey.Config) { c.Holidays = []string{"25/12"} },
		"max_error_rate":   func(c *monkey.Config) { c.MaxErrorRate = 2 },
	} {
		c := monkey.DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}

// fixture is a running embedded NATS with the hello spec, hello-v001 with
// three up instances (discovery entries, no processes: the monkey reads
// discovery, the provisioner is not running) taking all traffic.
type fixture struct {
	t    *testing.T
	ctx  context.Context
	js   jetstream.JetStream
	nc   *nats.Conn
	now  time.Time
	mu   sync.Mutex
	seen []events.Event
}

func newFixture(t *testing.T, enabled, leashed bool) *fixture {
	srv := testkit.Start(t)
	f := &fixture{t: t, ctx: testkit.Context(t, 60*time.Second), js: srv.JS(t), nc: srv.Conn(t), now: time.Date(2027, 3, 3, 10, 0, 0, 0, time.UTC)}
	kv := func(name string) jetstream.KeyValue {
		b, err := f.js.KeyValue(f.ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	svc := spec.Service{Name: "hello", Owner: "t", Capacity: 3, Artifact: spec.Artifact{Command: []string{"hello"}},
		Chaos: spec.Chaos{Enabled: true, MinTimeBetweenKills: spec.KillInterval{Every: time.Minute}}}
	if _, err := spec.Apply(f.ctx, kv("services"), svc); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"hello-v001-1", "hello-v001-2", "hello-v001-3"} {
		e := discovery.Entry{ID: id, Service: "hello", Group: "hello-v001", Address: "127.0.0.1:1", State: discovery.StateUp}
		if _, err := kv("instances").Put(f.ctx, discovery.Key("hello", "hello-v001", id), e.Encode()); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := routes.Update(f.ctx, kv("routes"), "hello", func(r *routes.Route) error {
		r.Weights["hello-v001"], r.Active = routes.MaxWeight, "hello-v001"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c := monkey.DefaultConfig()
	c.Enabled, c.Leashed = enabled, leashed
	b, _ := json.Marshal(c)
	if _, err := kv("chaos").Put(f.ctx, monkey.ConfigKey, b); err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{"chaos.>", "fleet.*.instance.terminate"} {
		if _, err := f.nc.Subscribe(subject, func(m *nats.Msg) {
			if ev, err := events.Decode(m.Data); err == nil {
				f.mu.Lock()
				f.seen = append(f.seen, ev)
				f.mu.Unlock()
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	_ = f.nc.Flush()
	return f
}

func (f *fixture) monkey() *monkey.Monkey {
	m, err := monkey.Open(f.ctx, f.js, func() time.Time {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.now
	}, zerolog.Nop())
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// count waits until the events of kind k number at least n (or 2 s pass)
// and returns how many there are.
func (f *fixture) count(k events.Kind, n int) int {
	deadline := time.Now().Add(2 * time.Second)
	for {
		f.mu.Lock()
		c := 0
		for _, ev := range f.seen {
			if ev.Type == k.Type() {
				c++
			}
		}
		f.mu.Unlock()
		if c >= n || time.Now().After(deadline) {
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMinTimeBetweenKillsWithThreeMonkeysRacing: three monkeys attempt at
// the same instants; one kill per minute, never two.
func TestMinTimeBetweenKillsWithThreeMonkeysRacing(t *testing.T) {
	f := newFixture(t, true, false)
	monkeys := []*monkey.Monkey{f.monkey(), f.monkey(), f.monkey()}
	kills := 0
	for round := range 5 {
		var wg sync.WaitGroup
		results := make([]monkey.Outcome, len(monkeys))
		for i, m := range monkeys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o, err := m.Attempt(f.ctx, "hello", "", "test")
				if err != nil {
					t.Error(err)
				}
				results[i] = o
			}()
		}
		wg.Wait()
		n := 0
		for _, o := range results {
			if o.Result == monkey.Terminated {
				n++
			} else if o.Result != monkey.Skipped || (!strings.Contains(o.Reason, "min time between kills") && !strings.Contains(o.Reason, "another monkey")) {
				t.Fatalf("round %d: %+v", round, o)
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d kills at once", round, n)
		}
		kills++
		// within the minute: nobody kills
		f.advance(30 * time.Second)
		for _, m := range monkeys {
			if o, _ := m.Attempt(f.ctx, "hello", "", "test"); o.Result != monkey.Skipped {
				t.Fatalf("round %d: a kill 30s after the last: %+v", round, o)
			}
		}
		f.advance(30 * time.Second)
	}
	if got := f.count(events.InstanceTerminate, kills); got != kills {
		t.Fatalf("%d terminate commands for %d kills", got, kills)
	}
	if got := f.count(events.ChaosTerminating, kills); got != kills {
		t.Fatalf("%d tracker events for %d kills", got, kills)
	}
}

// TestNoKillDuringARelease: the outage check fails while the service's lock
// is held; the skip says why.
func TestNoKillDuringARelease(t *testing.T) {
	f := newFixture(t, true, false)
	kv, _ := f.js.KeyValue(f.ctx, "releases")
	l, _ := json.Marshal(release.Lock{Release: "r7", Group: "hello-v002", Since: f.now})
	if _, err := kv.Create(f.ctx, release.LockKey("hello"), l); err != nil {
		t.Fatal(err)
	}
	o, err := f.monkey().Attempt(f.ctx, "hello", "", "test")
	if err != nil || o.Result != monkey.Skipped || !strings.Contains(o.Reason, "release r7 of hello is in flight") {
		t.Fatalf("%+v %v", o, err)
	}
	if f.count(events.ChaosSkipped, 1) != 1 || f.count(events.InstanceTerminate, 1) != 0 {
		t.Fatal("want one skipped event and no kill")
	}
}

// TestOutageChecks: too few healthy instances, a group that takes no
// traffic, chaos disabled, paused, or not opted in: skipped with the reason.
func TestOutageChecks(t *testing.T) {
	f := newFixture(t, true, false)
	m := f.monkey()
	if o, _ := m.Attempt(f.ctx, "hello", "hello-v002", "test"); o.Result != monkey.Skipped || !strings.Contains(o.Reason, "victims come only from hello-v001") {
		t.Fatalf("another group: %+v", o)
	}
	inst, _ := f.js.KeyValue(f.ctx, "instances")
	_ = inst.Delete(f.ctx, discovery.Key("hello", "hello-v001", "hello-v001-3"))
	if o, _ := m.Attempt(f.ctx, "hello", "", "test"); o.Result != monkey.Skipped || !strings.Contains(o.Reason, "2 healthy instances, fewer than the capacity 3") {
		t.Fatalf("degraded: %+v", o)
	}
	chaosKV, _ := f.js.KeyValue(f.ctx, "chaos")
	c := monkey.DefaultConfig()
	c.Enabled, c.Paused = true, true
	b, _ := json.Marshal(c)
	_, _ = chaosKV.Put(f.ctx, monkey.ConfigKey, b) // takes effect at once
	if o, _ := m.Attempt(f.ctx, "hello", "", "test"); o.Reason != "chaos is paused" {
		t.Fatalf("paused: %+v", o)
	}
	if o, _ := m.Attempt(f.ctx, "nope", "", "test"); o.Reason != `unknown service "nope"` {
		t.Fatalf("unknown: %+v", o)
	}
	if f.count(events.InstanceTerminate, 1) != 0 {
		t.Fatal("a kill despite the checks")
	}
}

// TestLeashedOnlyEmitsEvents: leashed (the default), the monkey picks a
// victim and says so, and kills nothing.
func TestLeashedOnlyEmitsEvents(t *testing.T) {
	f := newFixture(t, true, true)
	m := f.monkey()
	for range 3 {
		o, err := m.Attempt(f.ctx, "hello", "", "test")
		if err != nil || o.Result != monkey.WouldTerminate || o.Instance == "" {
			t.Fatalf("%+v %v", o, err)
		}
	}
	if f.count(events.ChaosWouldTerminate, 3) != 3 || f.count(events.InstanceTerminate, 1) != 0 || f.count(events.ChaosTerminating, 1) != 0 {
		t.Fatal("leashed: want 3 would_terminate and nothing else")
	}
	kv, _ := f.js.KeyValue(f.ctx, "chaos")
	if _, err := kv.Get(f.ctx, monkey.KillKey("hello")); err == nil {
		t.Fatal("a leashed monkey wrote a kill record")
	}
}

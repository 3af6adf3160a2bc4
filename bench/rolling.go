package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// BatchTiming is one batch of a rolling release, from its events' times.
type BatchTiming struct {
	Batch int
	Slots []string
	// Total is from the batch's start to the next batch's start (the
	// release's completion after the last).
	Total time.Duration
	// Up is the slots' own time: the old processes' stop, the new ones'
	// start and health checks (the provisioner's figure on healthy).
	Up time.Duration
	// Gate, Verify and Pause are the spec's; Overhead is the rest: the
	// control plane's own time.
	Gate, Verify, Pause, Overhead time.Duration
}

// RollingResult is what RollingRun measured.
type RollingResult struct {
	Slots   int
	Batches []BatchTiming
	// Acked writes during the healthy roll, and those that failed.
	Acked  int64
	Failed int
	// BadOutcome is the bad release's ending, BadBatch the batch whose
	// verify failed it, BadBack the time from its rolling.rollback to
	// rolled_back (every replaced slot back), BadFailed the writes that
	// failed during it.
	BadOutcome string
	BadBatch   int
	BadBack    time.Duration
	BadFailed  int
	// Lost are the acknowledged keys not read back with their last value
	// after both releases.
	Lost []string
}

// RollingSpec is examples/store released by rolling with slots slots, one
// at a time, the health gate and verify given. Its verify's latency
// metrics ignore shifts under 50 ms: this bench times batches, on a machine
// whose writers, store and api share two cores.
func RollingSpec(store string, slots int, gate, verify time.Duration) spec.Service {
	return NewSpec("store", "team-store", store).Capacity(slots).HealthEvery(250*time.Millisecond).Weight(0).
		Canary(verify, time.Second).LatencySlack(50*time.Millisecond).Rolling(gate, verify).Build()
}

// rollingEvents keeps a service's release events in order.
type rollingEvents struct {
	mu  sync.Mutex
	all []events.Event
}

func (r *rollingEvents) add(m *nats.Msg) {
	if ev, err := events.Decode(m.Data); err == nil {
		r.mu.Lock()
		r.all = append(r.all, ev)
		r.mu.Unlock()
	}
}

// of returns release id's events of kind k, in order.
func (r *rollingEvents) of(id string, k events.Kind) []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.Event
	for _, ev := range r.all {
		if ev.ReleaseID == id && ev.Type == k.Type() {
			out = append(out, ev)
		}
	}
	return out
}

// wait waits for release id's first event of kinds.
func (r *rollingEvents) wait(id string, limit time.Duration, kinds ...events.Kind) (events.Event, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, k := range kinds {
			if evs := r.of(id, k); len(evs) > 0 {
				return evs[0], nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return events.Event{}, fmt.Errorf("release %s: none of %v within %s", id, kinds, limit)
}

// RollingRun releases store (examples/store at path store, slots slots)
// and api (hello --store store) once, then under writers through api
// releases store v2 (healthy) and times each batch from its events, and a
// v3 whose second slot refuses writes (its second batch fails its verify
// and the roll goes back); at the end every acknowledged key is read
// back.
func RollingRun(dir, hello, store string, slots int, gate, verify time.Duration, log zerolog.Logger, progress func(string)) (RollingResult, error) {
	res := RollingResult{Slots: slots}
	m, nc, js, err := startLoopback(dir, log)
	if err != nil {
		return res, err
	}
	defer m.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, topology.BucketServices)
	if err != nil {
		return res, err
	}
	env, secrets, err := m.Tier("api", []string{"store"})
	if err != nil {
		return res, err
	}
	api := RollbackSpec(hello)
	api.Name, api.Owner = "api", "team-api"
	api.Artifact = spec.Artifact{Command: []string{hello, "--store", "store"}, Env: env, EnvSecrets: secrets}
	st := RollingSpec(store, slots, gate, verify)
	for _, s := range []spec.Service{api, st} {
		if _, err := spec.Apply(ctx, kv, s); err != nil {
			return res, err
		}
	}
	evs := &rollingEvents{}
	sub, err := nc.Subscribe("release.*.>", evs.add)
	if err != nil {
		return res, err
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return res, err
	}
	request := func(service string, art events.Artifact, version string) (string, error) {
		return requestRelease(ctx, js, "bench-"+service, service, version, art)
	}
	storeArt := func(version string, flags ...string) events.Artifact {
		return events.Artifact{Command: append([]string{store, "--version", version}, flags...)}
	}
	for _, r := range []struct {
		service string
		art     events.Artifact
	}{{"store", storeArt("v1")}, {"api", events.Artifact{Command: []string{hello, "--store", "store", "--version", "v1"}}}} {
		id, err := request(r.service, r.art, "v1")
		if err != nil {
			return res, err
		}
		if _, err := evs.wait(id, 2*time.Minute, events.ReleaseCompleted); err != nil {
			return res, err
		}
	}
	progress(fmt.Sprintf("store v1 (%d slots) and api v1 released", slots))
	w := StartWrites(m.HTTP(), "api", 4, 50)
	defer w.Stop()
	if err := w.AwaitOK(100, 20*time.Second); err != nil {
		return res, err
	}

	w.Stage("v2")
	acked := w.OK()
	id, err := request("store", storeArt("v2"), "v2")
	if err != nil {
		return res, err
	}
	done, err := evs.wait(id, 10*time.Minute, events.ReleaseCompleted, events.RolledBack)
	if err != nil {
		return res, err
	}
	if done.Type != events.ReleaseCompleted.Type() {
		return res, fmt.Errorf("store v2 did not complete: %s", done.Data)
	}
	res.Acked, res.Failed = w.OK()-acked, w.Failed("v2")
	started, healthy, verified := evs.of(id, events.RollingBatchStarted), evs.of(id, events.RollingBatchHealthy), evs.of(id, events.RollingBatchDone)
	if len(started) != len(healthy) || len(started) != len(verified) {
		return res, fmt.Errorf("store v2: %d batches started, %d healthy, %d done", len(started), len(healthy), len(verified))
	}
	for i := range started {
		var h events.RollingBatch
		if err := healthy[i].DecodeData(&h); err != nil {
			return res, err
		}
		next := done.Time
		if i+1 < len(started) {
			next = started[i+1].Time
		}
		b := BatchTiming{Batch: h.Batch, Slots: h.Slots, Total: next.Sub(started[i].Time), Up: h.Up, Gate: gate, Verify: verify}
		b.Overhead = b.Total - b.Up - b.Gate - b.Verify - b.Pause
		res.Batches = append(res.Batches, b)
		progress(fmt.Sprintf("batch %d %v: %s in all, slots down→up %s, control plane %s", b.Batch, b.Slots, b.Total.Round(time.Millisecond), b.Up.Round(time.Millisecond), b.Overhead.Round(time.Millisecond)))
	}

	w.Stage("v3")
	id, err = request("store", storeArt("v3", "--fail-slots", "store-1"), "v3")
	if err != nil {
		return res, err
	}
	end, err := evs.wait(id, 10*time.Minute, events.ReleaseCompleted, events.RolledBack)
	if err != nil {
		return res, err
	}
	res.BadOutcome = end.Type[len(events.TypePrefix+"release."):]
	if rb := evs.of(id, events.RollingRollback); len(rb) > 0 {
		var d events.RollingBatch
		_ = rb[0].DecodeData(&d)
		res.BadBatch, res.BadBack = d.Batch, end.Time.Sub(rb[0].Time)
	}
	res.BadFailed = w.Failed("v3")
	progress(fmt.Sprintf("store v3 (slot store-1 refuses writes): %s, %d writes failed", res.BadOutcome, res.BadFailed))
	w.Stop()
	res.Lost = w.Lost()
	return res, nil
}

// rollingBench is `bench rolling`.
func rollingBench() Entry {
	var slots int
	var gate, verify time.Duration
	return Entry{
		Name:  "rolling",
		Short: "a stateful store rolled one slot at a time under writes: time per batch, the control plane's overhead per batch, failed writes and lost keys; then a bad roll rolled back",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&slots, "slots", 3, "the store's slots (one batch each)")
			f.DurationVar(&gate, "health-gate", 2*time.Second, "the health gate of each batch")
			f.DurationVar(&verify, "verify", 4*time.Second, "the verify of each batch")
		},
		Examples: HelloAndStore,
		Run: func(_ context.Context, env Env, _ []string) error {
			w := env.Work
			r, err := RollingRun(w.Path("mesh"), w.Hello, w.Store, slots, gate, verify, env.Log(), env.Progress)
			if err != nil {
				return err
			}
			tab := table(env.Out)
			defer tab.Flush()
			row(tab, "batch", "slots", "in all", "slots down→up", "gate + verify", "control plane")
			var worst time.Duration
			for _, b := range r.Batches {
				worst = max(worst, b.Overhead)
				row(tab, b.Batch, strings.Join(b.Slots, ","), b.Total.Round(time.Millisecond), b.Up.Round(time.Millisecond), (b.Gate + b.Verify).Round(time.Millisecond), b.Overhead.Round(time.Millisecond))
			}
			tab.Flush()
			fmt.Fprintln(env.Out)
			row(tab, "figure", "measured", "target")
			row(tab, fmt.Sprintf("control-plane overhead per batch, worst of %d", len(r.Batches)), worst.Round(time.Millisecond), "< 200ms beyond the health gate and verify")
			row(tab, "writes during the healthy roll: acknowledged / failed", fmt.Sprintf("%d / %d", r.Acked, r.Failed), "failed 0")
			row(tab, "bad roll (slot store-1 refuses writes)", fmt.Sprintf("%s at batch %d, every slot back in %s", r.BadOutcome, r.BadBatch, r.BadBack.Round(time.Millisecond)), "rolled_back at batch 2")
			row(tab, "writes failed during the bad roll (store-1's refusals until it went back)", r.BadFailed, "counted")
			row(tab, "acknowledged keys lost over both rolls", len(r.Lost), "0")
			return nil
		},
	}
}

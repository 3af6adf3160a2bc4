package bench

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/redblack/redblack/services/chaos/monkey"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// ChaosResult is what ChaosRun saw.
type ChaosResult struct {
	Duration        time.Duration
	Kills           int // chaos.<service>.terminated
	Skipped         int // chaos.<service>.skipped (mostly: a replacement not up yet)
	Served, Failed  int64
	Replacements    []time.Duration // victim terminated → its replacement up
	Unreplaced      []string        // victims without a replacement up
	AuditTerminated int             // chaos.<service>.terminated stored in the FLEET stream
}

// KillsPerMinute is the sustained kill rate.
func (r ChaosResult) KillsPerMinute() float64 { return float64(r.Kills) / r.Duration.Minutes() }

// ReplacementPercentile of the kill → replacement-up times.
func (r ChaosResult) ReplacementPercentile(q float64) time.Duration {
	d := append([]time.Duration(nil), r.Replacements...)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// ChaosSpec is hello with 3 instances and Chaos Monkey in its fast mode.
func ChaosSpec(hello string, mean, minGap time.Duration) spec.Service {
	return NewSpec("hello", "bench", hello).Capacity(3).Bake(time.Second).Chaos(mean, minGap).Build()
}

// ChaosRun releases hello (3 instances) in a mesh in dir, puts steady load
// through the router and lets the monkey loose, unleashed, in its fast mode
// for d; then pauses it and waits for the group to be whole.
func ChaosRun(dir, hello string, d, mean, minGap time.Duration) (ChaosResult, error) {
	res := ChaosResult{Duration: d}
	m, nc, js, err := startLoopback(dir, zerolog.Nop())
	if err != nil {
		return res, err
	}
	defer m.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), d+3*time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, topology.BucketServices)
	if err != nil {
		return res, err
	}
	if _, err := spec.Apply(ctx, kv, ChaosSpec(hello, mean, minGap)); err != nil {
		return res, err
	}
	t := &timeline{at: map[string]events.Event{}}
	var mu sync.Mutex
	var seen []events.Event
	for _, subject := range []string{"release.hello.>", "chaos.hello.>", "fleet.hello.instance.>"} {
		sub, err := nc.Subscribe(subject, func(msg *nats.Msg) {
			t.add(msg)
			if ev, err := events.Decode(msg.Data); err == nil {
				mu.Lock()
				seen = append(seen, ev)
				mu.Unlock()
			}
		})
		if err != nil {
			return res, err
		}
		defer sub.Unsubscribe()
	}
	if err := nc.Flush(); err != nil {
		return res, err
	}
	ev, err := events.NewWithID("bench-chaos-v1", "bench", events.ReleaseRequested, "hello", "bench-chaos-v1", events.Requested{Version: "v1"})
	if err != nil {
		return res, err
	}
	if _, err := natsx.Publish(ctx, js, events.ReleaseRequested.Subject("hello"), ev); err != nil {
		return res, err
	}
	if _, err := t.wait("bench-chaos-v1", time.Minute, events.ReleaseCompleted); err != nil {
		return res, err
	}
	load := StartLoad(m.HTTP(), "hello", 4, nil, nil)
	defer load.Stop()
	chaosKV, err := js.KeyValue(ctx, topology.BucketChaos)
	if err != nil {
		return res, err
	}
	setChaos := func(enabled bool) error {
		c, rev, err := monkey.GetConfig(ctx, chaosKV)
		if err != nil {
			return err
		}
		c.Enabled, c.Leashed = enabled, false
		_, err = monkey.PutConfig(ctx, chaosKV, c, rev)
		return err
	}
	if err := setChaos(true); err != nil {
		return res, err
	}
	time.Sleep(d) // the monkey's time on stage: a fixed span, not a condition
	if err := setChaos(false); err != nil {
		return res, err
	}
	// Settle: an attempt that read the config before the disable may
	// still kill (its context allows 10 s). Wait until every kill begun
	// (chaos.terminating) is confirmed, every victim is replaced, and the
	// FLEET stream holds exactly the kills seen.
	whole := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		var begun int
		res.Replacements, res.Unreplaced, res.Kills, res.Skipped, begun = replacements(seen)
		mu.Unlock()
		res.AuditTerminated, err = countStored(ctx, js, topology.StreamFleet, events.ChaosTerminated.Subject("hello"))
		if err != nil {
			return res, err
		}
		settled := len(res.Unreplaced) == 0 && begun == res.Kills && res.AuditTerminated == res.Kills
		if settled || time.Now().After(whole) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ok, failed, _ := load.Stop()
	res.Served, res.Failed = ok, failed
	if v := m.Violations(); err == nil && len(v) > 0 {
		err = fmt.Errorf("bench: the services asked for subjects outside their permissions: %v", v)
	}
	return res, err
}

// replacements pairs each chaos kill with its replacement: the victim's
// instance.terminated, the instance.replaced naming it, and that new
// instance's instance.up. begun counts the kills announced
// (chaos.terminating), confirmed or not.
func replacements(seen []events.Event) (took []time.Duration, unreplaced []string, kills, skipped, begun int) {
	terminated := map[string]time.Time{}
	replacedBy := map[string]string{} // victim → new instance
	up := map[string]time.Time{}
	var victims []string
	for _, ev := range seen {
		switch ev.Type {
		case events.ChaosTerminated.Type():
			var c events.Chaos
			if ev.DecodeData(&c) == nil {
				victims = append(victims, c.Instance)
			}
		case events.ChaosSkipped.Type():
			skipped++
		case events.ChaosTerminating.Type():
			begun++
		case events.InstanceTerminated.Type(), events.InstanceReplaced.Type(), events.InstanceUp.Type():
			var i events.Instance
			if ev.DecodeData(&i) != nil {
				continue
			}
			switch ev.Type {
			case events.InstanceTerminated.Type():
				terminated[i.Instance] = ev.Time
			case events.InstanceReplaced.Type():
				replacedBy[strings.TrimPrefix(i.Reason, "replaces ")] = i.Instance
			default:
				if _, ok := up[i.Instance]; !ok {
					up[i.Instance] = ev.Time
				}
			}
		}
	}
	for _, v := range victims {
		at, ok := up[replacedBy[v]]
		if !ok {
			unreplaced = append(unreplaced, v)
			continue
		}
		took = append(took, at.Sub(terminated[v]))
	}
	return took, unreplaced, len(victims), skipped, begun
}

// countStored counts a subject's messages kept in a stream.
func countStored(ctx context.Context, js jetstream.JetStream, stream, subject string) (int, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}

// String prints the result for a log.
func (r ChaosResult) String() string {
	return fmt.Sprintf("%d kills in %s (%.1f/min), %d skipped, %d requests %d failed, replacement p50 %s max %s, %d in the audit trail",
		r.Kills, r.Duration, r.KillsPerMinute(), r.Skipped, r.Served+r.Failed, r.Failed,
		r.ReplacementPercentile(0.5).Round(time.Millisecond), r.ReplacementPercentile(1).Round(time.Millisecond), r.AuditTerminated)
}

// chaosBench is `bench chaos`.
func chaosBench() Entry {
	var d, mean, minGap time.Duration
	return Entry{
		Name:  "chaos",
		Short: "Chaos Monkey unleashed in fast mode on hello (3 instances) under load: kills/min, failed requests, kill → replacement up",
		Flags: func(f *pflag.FlagSet) {
			f.DurationVar(&d, "for", 30*time.Second, "how long the monkey kills")
			f.DurationVar(&mean, "mean", time.Second, "mean time between kills (fast mode)")
			f.DurationVar(&minGap, "min", 2*time.Second, "min time between kills")
		},
		Examples: Hello,
		Run: func(_ context.Context, env Env, _ []string) error {
			w := env.Work
			r, err := ChaosRun(w.Path("mesh"), w.Hello, d, mean, minGap)
			if err != nil {
				return err
			}
			tab := table(env.Out)
			defer tab.Flush()
			row(tab, "figure", "measured", "target")
			row(tab, fmt.Sprintf("kills in %s (mean %s, min %s between)", d, mean, minGap), fmt.Sprintf("%d (%.1f/min)", r.Kills, r.KillsPerMinute()), "—")
			row(tab, "kills skipped by the checks (group not whole yet, …)", r.Skipped, "—")
			row(tab, "requests through the router / failed", fmt.Sprintf("%d / %d", r.Served+r.Failed, r.Failed), "0 failed")
			row(tab, "kill → replacement up, p50 / max", fmt.Sprintf("%s / %s", r.ReplacementPercentile(0.5).Round(time.Millisecond), r.ReplacementPercentile(1).Round(time.Millisecond)), "—")
			row(tab, "victims not replaced", len(r.Unreplaced), "0")
			row(tab, "kills in the audit trail (FLEET stream)", r.AuditTerminated, r.Kills)
			return nil
		},
	}
}

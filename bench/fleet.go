package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// Fleet holds the fleet figures.
type Fleet struct {
	// ToReady is, per group size, the time from the create command to
	// servergroup.ready (every instance up and in discovery).
	ToReady map[int]time.Duration
	// Replace is the time from a SIGKILL of an instance to its
	// replacement's instance.up event, over several kills.
	Replace Latencies
	// RSS is the resident memory of each instance of a 10-instance group.
	RSSMin, RSSAvg, RSSMax int64
}

// FleetRun starts the mesh in dir and measures with the hello binary at
// helloPath: groups of each size in sizes to ready, kills replaced, RSS.
func FleetRun(dir, helloPath string, sizes []int, kills int) (Fleet, error) {
	cfg := mesh.DefaultConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = dir, "127.0.0.1:0", "127.0.0.1:0"
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		return Fleet{}, err
	}
	defer m.Stop()
	nc, err := m.Connect("bench")
	if err != nil {
		return Fleet{}, err
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, topology.BucketServices)
	if err != nil {
		return Fleet{}, err
	}
	if _, err := spec.Apply(ctx, kv, spec.Service{Name: "hello", Owner: "bench", Capacity: 3, MaxCapacity: spec.GlobalMaxCapacity,
		Artifact: spec.Artifact{Command: []string{helloPath}}}); err != nil {
		return Fleet{}, err
	}
	tap, err := nc.SubscribeSync("fleet.hello.>")
	if err != nil {
		return Fleet{}, err
	}
	r := Fleet{ToReady: map[int]time.Duration{}}
	for i, n := range sizes {
		group := fmt.Sprintf("hello-v%03d", i+1)
		start := time.Now()
		if err := command(ctx, js, events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: group, Version: "v1", Capacity: n}); err != nil {
			return r, err
		}
		if _, err := Await(tap, events.ServerGroupReady, group, "", 60*time.Second); err != nil {
			return r, err
		}
		r.ToReady[n] = time.Since(start)
		if n == 10 {
			g, err := List(nc, group)
			if err != nil {
				return r, err
			}
			var sum int64
			r.RSSMin = 1 << 62
			for _, in := range g.Instances {
				rss, _ := rssOf(in.PID)
				sum += rss
				r.RSSMin, r.RSSMax = min(r.RSSMin, rss), max(r.RSSMax, rss)
			}
			r.RSSAvg = sum / int64(len(g.Instances))
		}
		if err := command(ctx, js, events.ServerGroupDestroy, events.ServerGroupCommand{Service: "hello", Group: group}); err != nil {
			return r, err
		}
		if _, err := Await(tap, events.ServerGroupDestroyed, group, "", 60*time.Second); err != nil {
			return r, err
		}
	}
	group := fmt.Sprintf("hello-v%03d", len(sizes)+1)
	if err := command(ctx, js, events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: group, Version: "v1", Capacity: 3}); err != nil {
		return r, err
	}
	if _, err := Await(tap, events.ServerGroupReady, group, "", 60*time.Second); err != nil {
		return r, err
	}
	var lat []time.Duration
	for k := 0; k < kills; k++ {
		g, err := List(nc, group)
		if err != nil {
			return r, err
		}
		victim := g.Instances[k%len(g.Instances)]
		start := time.Now()
		if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
			return r, err
		}
		if _, err := Await(tap, events.InstanceUp, group, victim.ID, 30*time.Second); err != nil {
			return r, err
		}
		lat = append(lat, time.Since(start))
	}
	r.Replace = summarise(lat)
	return r, nil
}

func command(ctx context.Context, js jetstream.JetStream, k events.Kind, c events.ServerGroupCommand) error {
	ev, err := events.New("redblack/bench", k, c.Service, "", c)
	if err != nil {
		return err
	}
	_, err = natsx.Publish(ctx, js, k.Subject(c.Service), ev)
	return err
}

// Await reads the tap until an event of kind k about group (and, when
// notInstance is set, about another instance than it).
func Await(tap *nats.Subscription, k events.Kind, group, notInstance string, limit time.Duration) (events.Event, error) {
	deadline := time.Now().Add(limit)
	for {
		m, err := tap.NextMsg(time.Until(deadline))
		if err != nil {
			return events.Event{}, fmt.Errorf("waiting for %s of %s: %w", k, group, err)
		}
		ev, err := events.Decode(m.Data)
		if err != nil {
			continue
		}
		if ev.Type == events.ServerGroupFailed.Type() && strings.Contains(string(ev.Data), group) {
			return ev, fmt.Errorf("%s failed: %s", group, ev.Data)
		}
		if ev.Type != k.Type() || !strings.Contains(string(ev.Data), `"group":"`+group+`"`) {
			continue
		}
		if notInstance != "" && strings.Contains(string(ev.Data), `"instance":"`+notInstance+`"`) {
			continue
		}
		return ev, nil
	}
}

// List asks the provisioner for one group of hello.
func List(nc *nats.Conn, group string) (fleet.Group, error) {
	resp, err := nc.Request(natsx.EndpointSubject("provisioner", "list"), []byte("hello"), 5*time.Second)
	if err != nil {
		return fleet.Group{}, err
	}
	var gs []fleet.Group
	if err := json.Unmarshal(resp.Data, &gs); err != nil {
		return fleet.Group{}, err
	}
	for _, g := range gs {
		if g.Spec.Group == group {
			return g, nil
		}
	}
	return fleet.Group{}, fmt.Errorf("group %s not listed", group)
}

// fleetBench is `bench fleet`.
func fleetBench() Entry {
	var kills int
	return Entry{
		Name:  "fleet",
		Short: "groups of 10 and 100 instances to all up, SIGKILL to replacement up, memory per instance",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&kills, "kills", 5, "instances to SIGKILL for the replacement figure")
		},
		Examples: Hello,
		Run: func(_ context.Context, env Env, _ []string) error {
			w := env.Work
			r, err := FleetRun(w.Path("mesh"), w.Hello, []int{10, 100}, kills)
			if err != nil {
				return err
			}
			mb := func(b int64) float64 { return float64(b) / 1e6 }
			tab := table(env.Out)
			defer tab.Flush()
			row(tab, "figure (examples/hello, local provider)", "measured", "target")
			for _, n := range []int{10, 100} {
				row(tab, fmt.Sprintf("%d-instance group: create → all up (ready)", n), r.ToReady[n].Round(time.Millisecond), "< 10s")
			}
			row(tab, fmt.Sprintf("SIGKILL → replacement up, p50 / max (n=%d)", r.Replace.N),
				fmt.Sprintf("%s / %s", r.Replace.P50.Round(time.Millisecond), r.Replace.Max.Round(time.Millisecond)), "< 2s")
			row(tab, "memory per instance (RSS) min / avg / max", fmt.Sprintf("%.1f / %.1f / %.1f MB", mb(r.RSSMin), mb(r.RSSAvg), mb(r.RSSMax)), "-")
			return nil
		},
	}
}

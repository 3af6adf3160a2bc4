package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// Ghosts is what the mesh holds after a number of releases: what must stay
// bounded however many releases came before.
type Ghosts struct {
	Releases      int    // releases ended so far
	RouteGroups   int    // groups in hello's routes entry
	RouteBytes    int    // its size
	Instances     int    // entries in the instances bucket
	Backends      int    // instances in the router's registry (and /metrics)
	Processes     int    // hello processes running
	MetricsBytes  uint64 // METRICS stream size
	MetricsMsgs   uint64
	SamplesPerSec float64 // samples published in the last second
}

// GhostsRun releases hello n times under light load, each a short canary
// and bake (every tenth one fails its bake on purpose, so rollbacks leave
// their groups behind too), and measures the mesh's state every `every`
// releases.
func GhostsRun(dir, hello string, n, every int, log zerolog.Logger, progress func(Ghosts)) ([]Ghosts, error) {
	m, nc, js, err := startLoopback(dir, log)
	if err != nil {
		return nil, err
	}
	defer m.Stop()
	defer testkit.KillAll(hello)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, topology.BucketServices)
	if err != nil {
		return nil, err
	}
	svc := RollbackSpec(hello)
	svc.Strategy.Bake.Duration = spec.Duration(time.Second)
	if _, err := spec.Apply(ctx, kv, svc); err != nil {
		return nil, err
	}
	t := &timeline{at: map[string]events.Event{}}
	sub, err := nc.Subscribe("release.hello.>", t.add)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	samples, err := nc.SubscribeSync("metrics.>")
	if err != nil {
		return nil, err
	}
	defer samples.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return nil, err
	}
	request := func(version string, flags ...string) (string, error) {
		return requestHello(ctx, js, "ghost", hello, version, flags...)
	}
	rkv, err := js.KeyValue(ctx, topology.BucketRoutes)
	if err != nil {
		return nil, err
	}
	ikv, err := js.KeyValue(ctx, topology.BucketInstances)
	if err != nil {
		return nil, err
	}
	measure := func(done int) (Ghosts, error) {
		g := Ghosts{Releases: done, Backends: m.Router().Backends(), Processes: testkit.CountProcesses(hello)}
		if e, err := rkv.Get(ctx, "hello"); err == nil {
			g.RouteBytes = len(e.Value())
			if r, err := routes.Decode(e.Value()); err == nil {
				g.RouteGroups = len(r.Weights)
			}
		}
		keys, err := ikv.ListKeys(ctx)
		if err != nil {
			return g, err
		}
		for range keys.Keys() {
			g.Instances++
		}
		st, err := js.Stream(ctx, topology.StreamMetrics)
		if err != nil {
			return g, err
		}
		g.MetricsBytes, g.MetricsMsgs = st.CachedInfo().State.Bytes, st.CachedInfo().State.Msgs
		// samples in one second, counted as they arrive
		for {
			if _, err := samples.NextMsg(time.Millisecond); err != nil {
				break
			}
		}
		count, until := 0, time.Now().Add(time.Second)
		for time.Now().Before(until) {
			if _, err := samples.NextMsg(time.Until(until)); err == nil {
				count++
			}
		}
		g.SamplesPerSec = float64(count)
		return g, nil
	}
	var out []Ghosts
	id, err := request("v1")
	if err != nil {
		return nil, err
	}
	if _, err := t.wait(id, time.Minute, events.ReleaseCompleted); err != nil {
		return nil, err
	}
	load := StartLoad(m.HTTP(), "hello", 2, nil, nil)
	defer load.Stop()
	for i := 1; i <= n; i++ {
		var flags []string
		if i%10 == 0 {
			flags = []string{"--fail-after", "500ms"} // rolled back in its bake
		}
		id, err := request(fmt.Sprintf("g%d", i), flags...)
		if err != nil {
			return out, err
		}
		if _, err := t.wait(id, 2*time.Minute, events.ReleaseCompleted, events.RolledBack, events.ReleaseRejected, events.ReleaseAborted); err != nil {
			return out, err
		}
		if i%every == 0 || i == n {
			g, err := measure(i)
			if err != nil {
				return out, err
			}
			out = append(out, g)
			progress(g)
		}
	}
	if v := m.Violations(); len(v) > 0 {
		return out, fmt.Errorf("bench: permission violations: %v", v)
	}
	return out, nil
}

// ghostsBench is `bench ghosts`.
func ghostsBench() Entry {
	var releases, every int
	return Entry{
		Name:  "ghosts",
		Short: "many releases in a row: the routes entry, the instances bucket, the router's registry, METRICS and hello processes stay bounded",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&releases, "releases", 200, "releases in a row")
			f.IntVar(&every, "every", 25, "measure after every this many")
		},
		Examples: Hello,
		Run: func(_ context.Context, env Env, _ []string) error {
			w := env.Work
			tw := table(env.Out)
			row(tw, "RELEASES", "ROUTE GROUPS", "ROUTE BYTES", "INSTANCE ENTRIES", "REGISTRY", "PROCESSES", "METRICS MSGS", "METRICS BYTES", "SAMPLES/S")
			_, err := GhostsRun(w.Path("mesh"), w.Hello, releases, every, logging.New(env.Err, "", "error"), func(g Ghosts) {
				row(tw, g.Releases, g.RouteGroups, g.RouteBytes, g.Instances, g.Backends, g.Processes, g.MetricsMsgs, g.MetricsBytes, fmt.Sprintf("%.0f", g.SamplesPerSec))
				tw.Flush()
			})
			fmt.Fprintln(env.Out, "bounded: every column but METRICS (kept 15 min, at most 256 MiB) stays flat as releases pile up; before issue 13 each release left a weight-0 group in routes, sampled for ever")
			return err
		},
	}
}

package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/discovery/lb"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/topology"
)

// Propagation measures, over n route changes, the time from a change's
// write to the routes bucket until each of clients discovery clients (each
// on its own loopback connection, as in other processes) routes by it.
func Propagation(dir string, n, clients int) (Latencies, error) {
	e, nc, js, err := server(dir)
	if err != nil {
		return Latencies{}, err
	}
	defer e.Shutdown()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rkv, err := js.KeyValue(ctx, topology.BucketRoutes)
	if err != nil {
		return Latencies{}, err
	}
	ikv, err := js.KeyValue(ctx, topology.BucketInstances)
	if err != nil {
		return Latencies{}, err
	}
	for i, g := range []string{"api-v001", "api-v002"} {
		en := discovery.Entry{ID: fmt.Sprint(i), Service: "api", Group: g, Address: fmt.Sprintf("127.0.0.1:%d", 20001+i), State: discovery.StateUp, Started: time.Now()}
		if _, err := ikv.Put(ctx, discovery.Key("api", g, en.ID), en.Encode()); err != nil {
			return Latencies{}, err
		}
	}
	var cs []*lb.Client
	for range clients {
		cnc, err := nats.Connect(e.ClientURL())
		if err != nil {
			return Latencies{}, err
		}
		defer cnc.Close()
		c, err := lb.Start(ctx, cnc, lb.Config{})
		if err != nil {
			return Latencies{}, err
		}
		defer c.Close()
		cs = append(cs, c)
	}
	var d []time.Duration
	for i := range n {
		active := []string{"api-v001", "api-v002"}[i%2]
		start := time.Now()
		_, rev, err := routes.Update(ctx, rkv, "api", func(r *routes.Route) error {
			r.Weights = map[string]int{"api-v001": 0, "api-v002": 0}
			r.Weights[active] = routes.MaxWeight
			return nil
		})
		if err != nil {
			return Latencies{}, err
		}
		for _, c := range cs {
			for c.Revision("api") < rev {
				if time.Since(start) > 10*time.Second {
					return Latencies{}, fmt.Errorf("a client did not route by revision %d in 10s", rev)
				}
				time.Sleep(50 * time.Microsecond) // polled every 50 µs: the figure's resolution
			}
			d = append(d, time.Since(start))
		}
	}
	return summarise(d), nil
}

// PickCost measures a discovery client's Pick and Done over a route of two
// groups of 10 instances each: ns and allocations per call.
func PickCost(dir string) (nsPerOp float64, allocsPerOp int64, err error) {
	e, nc, js, err := server(dir)
	if err != nil {
		return 0, 0, err
	}
	defer e.Shutdown()
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rkv, _ := js.KeyValue(ctx, topology.BucketRoutes)
	ikv, _ := js.KeyValue(ctx, topology.BucketInstances)
	for i := range 20 {
		g := []string{"api-v001", "api-v002"}[i%2]
		en := discovery.Entry{ID: fmt.Sprint(i), Service: "api", Group: g, Address: fmt.Sprintf("127.0.0.1:%d", 20001+i), State: discovery.StateUp, Started: time.Now()}
		if _, err := ikv.Put(ctx, discovery.Key("api", g, en.ID), en.Encode()); err != nil {
			return 0, 0, err
		}
	}
	if _, _, err := routes.Update(ctx, rkv, "api", func(r *routes.Route) error {
		r.Weights = map[string]int{"api-v001": 900, "api-v002": 100}
		return nil
	}); err != nil {
		return 0, 0, err
	}
	c, err := lb.Start(ctx, nc, lb.Config{})
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	for c.Revision("api") == 0 {
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
	var failed error
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			be, err := c.Pick("api")
			if err != nil {
				failed = err
				return
			}
			c.Done(be, 200, nil, time.Millisecond)
		}
	})
	if failed != nil {
		return 0, 0, failed
	}
	return float64(r.NsPerOp()), r.AllocsPerOp(), nil
}

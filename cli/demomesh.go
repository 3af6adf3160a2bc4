package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/topology"
)

// demoMesh is what every demo runs on: the mesh in a temp dir, the CLI's
// own client as its admin, the services bucket, the releases' store, the
// live timeline of release events, and the step printer.
type demoMesh struct {
	a        *app
	start    time.Time
	dir      string
	m        *mesh.Mesh
	c        *client
	ctx      context.Context
	services jetstream.KeyValue
	store    release.Store
	ended    *endings
	closers  []func()
}

// startDemo starts the mesh in a temp dir (kept with keep) for a demo that
// lasts at most limit; build puts the example programs into the dir first.
// Close stops everything it started.
func (a *app) startDemo(keep bool, limit time.Duration, what string, build func(dir string) error) (d *demoMesh, err error) {
	d = &demoMesh{a: a, start: time.Now(), ended: &endings{end: map[string]events.Event{}, restored: map[string]time.Time{}}}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.dir, err = os.MkdirTemp("", "redblack-demo-"); err != nil {
		return d, err
	}
	if !keep {
		d.onClose(func() { os.RemoveAll(d.dir) })
	}
	d.step("preparing %s", what)
	if err := build(d.dir); err != nil {
		return d, err
	}
	cfg := mesh.DefaultConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = d.dir, "127.0.0.1:0", "127.0.0.1:0"
	// the demos' load shares two cores with the mesh: their bakes fail on
	// errors, and on p99 increases over DemoLatencySlack
	cfg.Watchdog.LatencySlack = DemoLatencySlack
	level := os.Getenv("REDBLACK_DEMO_LOG") // the services' own log: errors only unless asked
	if level == "" {
		level = "error"
	}
	cfg.Log = logging.New(a.err, "", level)
	if d.m, err = mesh.Start(context.Background(), cfg); err != nil {
		return d, err
	}
	d.onClose(func() { d.m.Stop() })
	d.step("mesh up: embedded NATS with JetStream at %s, services %s, router http://%s; bakes fail on errors, and on p99 increases over %s",
		d.m.URL(), strings.Join(mesh.ServiceNames, ", "), d.m.HTTP(), DemoLatencySlack)
	a.conn.URL, a.conn.Creds = d.m.URL(), d.m.AdminCreds() // the demo's own mesh, as its admin
	if d.c, err = a.dial(); err != nil {
		return d, err
	}
	d.onClose(d.c.close)
	ctx, cancel := timeout(limit)
	d.ctx = ctx
	d.onClose(cancel)
	if d.services, err = d.c.kv(ctx, topology.BucketServices); err != nil {
		return d, err
	}
	rkv, err := d.c.kv(ctx, topology.BucketReleases)
	if err != nil {
		return d, err
	}
	d.store = release.Store{KV: rkv}
	return d, nil
}

// onClose runs fn at Close, the last added first.
func (d *demoMesh) onClose(fn func()) { d.closers = append(d.closers, fn) }

// Close stops what the demo started, the last started first.
func (d *demoMesh) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// step prints a line of the timeline.
func (d *demoMesh) step(format string, args ...any) {
	fmt.Fprintf(d.a.out, "[%6.2fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// follow prints every release event on subject as it comes (with its
// subject, with withSubject) and records how releases end.
func (d *demoMesh) follow(subject string, withSubject bool) error {
	sub, err := d.c.nc.Subscribe(subject, func(msg *nats.Msg) {
		ev, err := events.Decode(msg.Data)
		if err != nil || ev.Type == events.ReleaseRequested.Type() {
			return
		}
		id := ev.ReleaseID[:min(8, len(ev.ReleaseID))]
		if withSubject {
			d.step("  %-5s %-9s %-22s %s", ev.Subject, id, shortType(ev.Type), describe(ev))
		} else {
			d.step("  %-9s %-22s %s", id, shortType(ev.Type), describe(ev))
		}
		switch ev.Type {
		case events.ReleaseCompleted.Type(), events.RolledBack.Type(), events.ReleaseRejected.Type():
			d.ended.add(ev)
		case events.TrafficRestored.Type():
			d.ended.mu.Lock()
			d.ended.restored[ev.ReleaseID] = ev.Time
			d.ended.mu.Unlock()
		}
	})
	if err != nil {
		return err
	}
	d.onClose(func() { sub.Unsubscribe() })
	return d.c.nc.Flush()
}

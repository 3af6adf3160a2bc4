// Package testkit starts a fresh embedded NATS server with JetStream for one
// test, on a random loopback port with a temporary store, and always shuts it
// down when the test ends.
package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/topology"
)

// LatencySlack is the bake latency slack (watchdog.Config.LatencySlack,
// `up --bake-latency-slack`) of the tests whose releases are not about
// latency. CI runs two packages' tests at once on two cores, and the
// cluster tests kill and restart NATS nodes beside the instances: when a
// process starts, the p99 of a 0.2–2 ms service jumps to 8–15 ms for
// seconds, and a bake that compares it with the p99 before its switch
// rolls a healthy release back (seen: "p99 latency 12.664ms is 3.4× the
// old group's 3.683ms", "7.531ms is 3.1× 2.459ms" after a node's loss).
// The watchdog's own tests judge the latency rule at its default (5 ms).
const LatencySlack = 50 * time.Millisecond

// Server is a test's embedded NATS server.
type Server struct {
	*natsx.Embedded
	// URL is the nats:// URL of its loopback listener.
	URL string
}

type options struct {
	maxPayload int32
	topology   bool
	topo       topology.Options
}

// Option changes what Start does.
type Option func(*options)

// WithMaxPayload raises the server's message size limit.
func WithMaxPayload(n int32) Option { return func(o *options) { o.maxPayload = n } }

// WithoutTopology leaves the server empty: no streams, no buckets.
func WithoutTopology() Option { return func(o *options) { o.topology = false } }

// WithTopology ensures the topology with these options instead of the defaults.
func WithTopology(to topology.Options) Option { return func(o *options) { o.topo = to } }

// Start starts a server on 127.0.0.1 with a random port and a t.TempDir()
// store, ensures the topology (unless WithoutTopology), and registers its
// shutdown with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{topology: true, topo: topology.DefaultOptions()}
	for _, f := range opts {
		f(&o)
	}
	e, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", MaxPayload: o.maxPayload, Name: "test"})
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	t.Cleanup(e.Shutdown)
	s := &Server{Embedded: e, URL: e.ClientURL()}
	if o.topology {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := topology.Ensure(ctx, s.JS(t), o.topo); err != nil {
			t.Fatalf("testkit: %v", err)
		}
	}
	return s
}

// Conn connects a client over loopback TCP (as another process would); it
// is closed when the test ends.
func (s *Server) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL, nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("testkit: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JS returns a JetStream context on a new connection.
func (s *Server) JS(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(s.Conn(t))
	if err != nil {
		t.Fatalf("testkit: jetstream: %v", err)
	}
	return js
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

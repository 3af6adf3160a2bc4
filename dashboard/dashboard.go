// Package dashboard is redblack's web dashboard: one page, served from the
// binary, that follows the mesh live over Server-Sent Events. It shows per
// service the server groups with their instances and weights, the release
// in flight on a timeline, the canary's latency distributions and error
// counts, the bake's live figures against its limits, rollbacks with their
// reasons and Chaos Monkey's kills; an audit view lists a service's release
// events. Rollback and abort act through the team API with the creds the
// viewer gives, so the NATS server's permissions decide: the dashboard
// itself writes nothing.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/loop"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/procfs"
	"github.com/redblack/redblack/shared/topology"
)

// DefaultAddr is the default address of the dashboard: `up --ui`'s and
// `redblack dashboard`'s.
const DefaultAddr = "127.0.0.1:8090"

//go:embed assets
var assets embed.FS

// Config configures the dashboard.
type Config struct {
	// NC reads the mesh: the buckets and the streams (an auditor's or the
	// admin's connection; the dashboard does not own it).
	NC *nats.Conn
	// Dial connects as the viewer for an action, from the creds they gave.
	Dial func(creds []byte) (*nats.Conn, error)
	Log  zerolog.Logger
	// Push is the most often a changed state is pushed (default 250 ms).
	Push time.Duration
}

// Server serves the dashboard.
type Server struct {
	cfg Config
	js  jetstream.JetStream
	kvs map[string]jetstream.KeyValue

	model *model

	mu      sync.Mutex
	clients map[chan []byte]struct{}
}

// New returns the dashboard; Run starts following the mesh.
func New(cfg Config) *Server {
	if cfg.Push <= 0 {
		cfg.Push = 250 * time.Millisecond
	}
	return &Server{cfg: cfg, kvs: map[string]jetstream.KeyValue{}, model: newModel(), clients: map[chan []byte]struct{}{}}
}

// Run follows the buckets, the event streams and the metrics samples, and
// pushes the state to the page whenever it changed, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	js, err := jetstream.New(s.cfg.NC)
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	s.js = js
	for _, b := range []string{topology.BucketServices, topology.BucketRoutes, topology.BucketInstances, topology.BucketReleases} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			return fmt.Errorf("dashboard: bucket %s: %w", b, err)
		}
		s.kvs[b] = kv
		if err := s.watch(ctx, b, kv); err != nil {
			return err
		}
	}
	since := time.Now().Add(-10 * time.Minute)
	if err := s.follow(ctx, topology.StreamReleases, []string{"release.>"}, since, s.model.event); err != nil {
		return err
	}
	if err := s.follow(ctx, topology.StreamFleet, []string{"chaos.>", "fleet.*.servergroup.>", "fleet.*.traffic.changed"}, since, s.model.event); err != nil {
		return err
	}
	if err := s.follow(ctx, topology.StreamMetrics, []string{"metrics.>"}, time.Now().Add(-time.Minute), s.model.sample); err != nil {
		return err
	}
	go s.push(ctx)
	return nil
}

// watch applies every entry of a bucket to the model.
func (s *Server) watch(ctx context.Context, bucket string, kv jetstream.KeyValue) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("dashboard: watch %s: %w", bucket, err)
	}
	natsx.Updates(ctx, w, s.cfg.Log, "dashboard "+bucket, func(e jetstream.KeyValueEntry, _ bool) {
		s.model.entry(bucket, e)
	})
	return nil
}

// follow reads a stream from since with an ordered consumer.
func (s *Server) follow(ctx context.Context, stream string, filter []string, since time.Time, apply func(subject string, data []byte)) error {
	cons, err := s.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: filter,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since})
	if err != nil {
		return fmt.Errorf("dashboard: follow %s: %w", stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		natsx.Guard(s.cfg.Log, "dashboard "+stream, func() { apply(m.Subject(), m.Data()) })
	})
	if err != nil {
		return fmt.Errorf("dashboard: follow %s: %w", stream, err)
	}
	go func() { <-ctx.Done(); cc.Stop() }()
	return nil
}

// push sends the state to every page when it changed, at most every Push.
func (s *Server) push(ctx context.Context) {
	loop.Every(ctx, s.cfg.Push, func() {
		if !s.model.takeDirty() {
			return
		}
		b, err := json.Marshal(s.model.snapshot(time.Now()))
		if err != nil {
			s.cfg.Log.Warn().Err(err).Msg("dashboard: state")
			return
		}
		s.mu.Lock()
		for c := range s.clients {
			select {
			case c <- b:
			default: // a slow page gets the next state instead
			}
		}
		s.mu.Unlock()
	})
}

// Handler serves the page, its assets and the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.model.snapshot(time.Now()))
	})
	mux.HandleFunc("GET /api/stream", s.stream)
	mux.HandleFunc("GET /api/audit", s.audit)
	mux.HandleFunc("POST /api/action", s.action)
	return mux
}

// stream is the Server-Sent Events feed: the whole state at once, then
// again whenever it changes.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	c := make(chan []byte, 1)
	first, err := json.Marshal(s.model.snapshot(time.Now()))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.mu.Lock()
	s.clients[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.clients, c)
		s.mu.Unlock()
	}()
	send := func(b []byte) bool {
		_, err := fmt.Fprintf(w, "event: state\ndata: %s\n\n", b)
		fl.Flush()
		return err == nil
	}
	if !send(first) {
		return
	}
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-c:
			if !send(b) {
				return
			}
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// Serve listens on addr and serves the dashboard until ctx ends.
func Serve(ctx context.Context, addr string, s *Server) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard (--ui): %w", procfs.ExplainInUse(addr, err))
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close() // the event streams never end on their own
		}
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Log.Warn().Err(err).Msg("dashboard: serve")
		}
	}()
	return l.Addr(), nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

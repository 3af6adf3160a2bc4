// Package app is the demo application redblack releases: an HTTP server that
// answers with its version and serves a health check, with failure modes set
// by flags so a release can go wrong on purpose.
package app

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config sets the version and the failure modes.
type Config struct {
	Version  string
	Instance string
	// Service is the service's name in the chain of versions (default
	// hello).
	Service string
	// Downstream services are called, in order, before each answer,
	// through Caller (a tier: see tier.go).
	Downstream []string
	Caller     Caller
	// Store is a stateful service whose keys /kv/KEY passes to, each to
	// its slot through Keys (store.go).
	Store string
	Keys  KeyCaller
	// ErrorRate is the share of requests answered 500, 0..1.
	ErrorRate float64
	// Latency is added to every request; Jitter spreads it uniformly by ±Jitter.
	Latency, Jitter time.Duration
	// TailRate of the requests (0..1) take TailLatency more: a slower tail
	// with the same median.
	TailRate    float64
	TailLatency time.Duration
	// Burn is CPU time spent on every request, busy (to load an
	// autoscaler's target_cpu).
	Burn time.Duration
	// FailAfter > 0: every request fails with 500 once this long has passed
	// since start, while /healthz stays green (a bug a short canary misses).
	FailAfter time.Duration
	// FailHealth makes /healthz answer 503.
	FailHealth bool
	// FailHealthAfter > 0: /healthz answers 503 once this long has passed.
	FailHealthAfter time.Duration
	// DropOrders is the share (0..1) of answered requests whose order is
	// lost: still a 200, but hello_orders_total does not count it (a
	// business regression the router cannot see).
	DropOrders float64
}

// App serves the demo application.
type App struct {
	cfg      Config
	start    time.Time
	now      func() time.Time
	requests atomic.Int64
	// answered and orders are the business counters /metrics exposes:
	// requests answered 200 at "/", and the orders they placed.
	answered, orders prometheus.Counter
	metrics          http.Handler
}

// New returns the app; now is the clock (time.Now in production).
func New(cfg Config, now func() time.Time) *App {
	if cfg.Service == "" {
		cfg.Service = "hello"
	}
	reg := prometheus.NewRegistry()
	a := &App{cfg: cfg, start: now(), now: now,
		answered: prometheus.NewCounter(prometheus.CounterOpts{Name: "hello_requests_total", Help: "Requests answered 200 at /."}),
		orders:   prometheus.NewCounter(prometheus.CounterOpts{Name: "hello_orders_total", Help: "Orders placed: one per request answered, unless --drop-orders loses it."}),
		metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}
	reg.MustRegister(a.answered, a.orders)
	return a
}

// ServeHTTP answers "/" with the version, "/healthz" with the health.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" {
		a.metrics.ServeHTTP(w, r)
		return
	}
	if r.URL.Path == "/healthz" {
		if !a.healthy() {
			http.Error(w, "unhealthy (--fail-health)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
		return
	}
	if a.cfg.Store != "" && strings.HasPrefix(r.URL.Path, "/kv/") {
		a.serveKV(w, r)
		return
	}
	w.Header().Set("X-Version", a.cfg.Version)
	if f := a.work(); f != nil {
		http.Error(w, f.reason, http.StatusInternalServerError)
		return
	}
	chain, err := a.callDownstream(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set(ChainHeader, chain)
	if len(a.cfg.Downstream) > 0 {
		fmt.Fprintln(w, chain)
		return
	}
	fmt.Fprintf(w, "hello from %s (%s)\n", a.cfg.Version, a.cfg.Instance)
	a.answered.Inc()
	if a.cfg.DropOrders == 0 || rand.Float64() >= a.cfg.DropOrders {
		a.orders.Inc()
	}
}

// failure is a request's injected failure: reason says which flag.
type failure struct {
	reason string
	// broken: --fail-after (the version is broken), not --error-rate
	broken bool
}

// work does one request's part common to HTTP and gRPC: it counts it,
// waits its latency, burns its CPU and returns the failure it must answer
// with (nil: none).
func (a *App) work() *failure {
	a.requests.Add(1)
	if d := a.delay(); d > 0 {
		time.Sleep(d)
	}
	for start := time.Now(); time.Since(start) < a.cfg.Burn; {
	}
	if a.cfg.FailAfter > 0 && a.now().Sub(a.start) >= a.cfg.FailAfter {
		return &failure{reason: "failing (--fail-after " + a.cfg.FailAfter.String() + ")", broken: true}
	}
	if a.cfg.ErrorRate > 0 && rand.Float64() < a.cfg.ErrorRate {
		return &failure{reason: "injected error (--error-rate)"}
	}
	return nil
}

// healthy reports whether /healthz (and the gRPC health service) say
// serving.
func (a *App) healthy() bool {
	return !a.cfg.FailHealth && (a.cfg.FailHealthAfter <= 0 || a.now().Sub(a.start) < a.cfg.FailHealthAfter)
}

// delay is the latency of one request: Latency ± Jitter, never negative,
// and TailLatency more for TailRate of them.
func (a *App) delay() time.Duration {
	d := a.cfg.Latency
	if a.cfg.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*a.cfg.Jitter)+1)) - a.cfg.Jitter
	}
	if a.cfg.TailRate > 0 && rand.Float64() < a.cfg.TailRate {
		d += a.cfg.TailLatency
	}
	return max(d, 0)
}

// Requests is how many non-health requests were served.
func (a *App) Requests() int64 { return a.requests.Load() }

// Package proxy is the router's HTTP data plane: a reverse proxy that picks a
// server group by weight and an instance in it from the current routing
// table, retries a request whose connection failed on another instance,
// ejects failing instances, and records per-instance metrics.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redblack/redblack/services/router/routing"
)

// Config tunes the data plane.
type Config struct {
	// MaxBodyBytes bounds a request body (413 above it; default 10 MiB).
	MaxBodyBytes int64
	// Retries after a failed connection, on other instances (default 2).
	Retries int
	// EjectAfter consecutive failures eject an instance (default 5) for
	// EjectFor, doubling on repeats (default 1 s).
	EjectAfter int32
	EjectFor   time.Duration
	// DialTimeout, ResponseHeaderTimeout and IdleConnTimeout of the
	// upstream transport (defaults 2 s, 30 s, 50 s — shorter than the
	// backends' keep-alive so the proxy closes idle connections first).
	DialTimeout, ResponseHeaderTimeout, IdleConnTimeout time.Duration
	// MaxIdlePerHost is the idle connections kept per instance (default 256,
	// at least the peak concurrency per instance).
	MaxIdlePerHost int
}

func (c *Config) defaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 10 << 20
	}
	if c.Retries == 0 {
		c.Retries = 2
	}
	if c.EjectAfter == 0 {
		c.EjectAfter = 5
	}
	if c.EjectFor == 0 {
		c.EjectFor = time.Second
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = 30 * time.Second
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = 50 * time.Second
	}
	if c.MaxIdlePerHost == 0 {
		c.MaxIdlePerHost = 256
	}
}

// Proxy is an http.Handler.
type Proxy struct {
	cfg       Config
	table     atomic.Pointer[routing.Table]
	rp        *httputil.ReverseProxy
	transport *http.Transport
}

// ErrorHeader carries the router's reason for an error it answered itself.
const ErrorHeader = "X-Redblack-Error"

// New builds the proxy with an empty table.
func New(cfg Config) *Proxy {
	cfg.defaults()
	p := &Proxy{cfg: cfg}
	p.table.Store(&routing.Table{})
	p.transport = &http.Transport{
		DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   cfg.MaxIdlePerHost,
		IdleConnTimeout:       cfg.IdleConnTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     false,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			pr.Out.Host = pr.In.Host
		},
		Transport:    &retrier{p: p},
		BufferPool:   bufferPool{},
		ErrorHandler: p.upstreamError,
	}
	return p
}

// Swap installs a new routing table; requests already routed finish on the
// old one.
func (p *Proxy) Swap(t *routing.Table) { p.table.Store(t) }

// Table returns the current table.
func (p *Proxy) Table() *routing.Table { return p.table.Load() }

// CloseIdle closes idle upstream connections (after a switch, so drained
// groups keep none open).
func (p *Proxy) CloseIdle() { p.transport.CloseIdleConnections() }

type ctxKey struct{}

// route is one request's routing state, shared with the transport.
type route struct {
	service *routing.Service
	group   *routing.Group
}

// ServeHTTP routes one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	svc := p.table.Load().Lookup(r.Host)
	if svc == nil {
		fail(w, http.StatusServiceUnavailable, fmt.Sprintf("no service is routed for host %q", r.Host))
		return
	}
	g := svc.PickGroup()
	if g == nil {
		fail(w, http.StatusServiceUnavailable, "no server group of "+svc.Name+" takes traffic")
		return
	}
	if len(g.Backends) == 0 {
		fail(w, http.StatusBadGateway, "no healthy instance in "+g.Name)
		return
	}
	if r.ContentLength > p.cfg.MaxBodyBytes {
		fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", p.cfg.MaxBodyBytes))
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, p.cfg.MaxBodyBytes)
	}
	if r.Header.Get("X-Request-Id") == "" {
		r.Header.Set("X-Request-Id", requestID())
	}
	ctx := context.WithValue(r.Context(), ctxKey{}, &route{service: svc, group: g})
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

func fail(w http.ResponseWriter, code int, reason string) {
	w.Header().Set(ErrorHeader, reason)
	http.Error(w, reason, code)
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", mbe.Limit))
	case errors.Is(err, context.Canceled):
		w.WriteHeader(499) // the client went away
	default:
		g := ""
		if rt, ok := r.Context().Value(ctxKey{}).(*route); ok {
			g = rt.group.Name
		}
		fail(w, http.StatusBadGateway, fmt.Sprintf("upstream of %s: %v", g, err))
	}
}

func requestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// retrier is the upstream RoundTripper: it picks the instance, and retries
// a request whose connection failed before any response byte on another
// instance — any method when the dial failed (no byte of the request left),
// idempotent methods with a replayable body otherwise.
type retrier struct{ p *Proxy }

func (rt *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	st, _ := req.Context().Value(ctxKey{}).(*route)
	if st == nil {
		return nil, errors.New("proxy: request without a route")
	}
	if req.Body != nil && req.Body != http.NoBody {
		// the transport closes the body when a try fails; keep it open so a
		// try whose dial failed (nothing read) can be sent again. The server
		// closes the inbound body when the handler ends.
		req.Body = keepOpen{req.Body}
	}
	var last *routing.Backend
	for try := 0; ; try++ {
		b := st.group.Pick(last)
		if b == nil {
			return nil, fmt.Errorf("no healthy instance in %s", st.group.Name)
		}
		req.URL.Host = b.Addr
		b.Inflight.Add(1)
		start := time.Now()
		resp, err := rt.p.transport.RoundTrip(req)
		if err != nil {
			b.Inflight.Add(-1)
			b.Stats.ConnError()
			b.Result(true, rt.p.cfg.EjectAfter, rt.p.cfg.EjectFor)
			if try < rt.p.cfg.Retries && retryable(req, err) && req.Context().Err() == nil {
				if req.GetBody != nil {
					body, gerr := req.GetBody()
					if gerr != nil {
						return nil, err
					}
					req.Body = body
				}
				b.Stats.Retries.Add(1)
				last = b
				continue
			}
			return nil, err
		}
		b.Result(resp.StatusCode >= 500, rt.p.cfg.EjectAfter, rt.p.cfg.EjectFor)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// an upgraded connection (WebSocket) keeps its writable body
			b.Inflight.Add(-1)
			b.Stats.Observe(resp.StatusCode, time.Since(start))
			return resp, nil
		}
		resp.Body = &trackedBody{ReadCloser: resp.Body, b: b, start: start, status: resp.StatusCode}
		return resp, nil
	}
}

func retryable(req *http.Request, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true // nothing was sent
	}
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// keepOpen is a request body whose Close does nothing.
type keepOpen struct{ io.ReadCloser }

func (keepOpen) Close() error { return nil }

// trackedBody ends a request's accounting when its response body is closed.
type trackedBody struct {
	io.ReadCloser
	b      *routing.Backend
	start  time.Time
	status int
	once   sync.Once
}

func (t *trackedBody) Close() error {
	err := t.ReadCloser.Close()
	t.once.Do(func() {
		t.b.Inflight.Add(-1)
		t.b.Stats.Observe(t.status, time.Since(t.start))
	})
	return err
}

// bufferPool is the ReverseProxy's copy buffer pool.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

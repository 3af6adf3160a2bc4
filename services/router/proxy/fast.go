package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/redblack/redblack/services/router/routing"
)

// Fast is the data plane on fasthttp: requests are parsed into pooled
// buffers, sent to the instance over a per-instance keep-alive pool and the
// response is streamed back, with no goroutine hand-off per request.
// WebSocket upgrades are spliced through after the handshake.
type Fast struct {
	cfg     Config
	table   atomic.Pointer[routing.Table]
	clients sync.Map // instance address → *fasthttp.HostClient
	srv     *fasthttp.Server
}

// NewFast builds the data plane with an empty table.
func NewFast(cfg Config) *Fast {
	cfg.defaults()
	f := &Fast{cfg: cfg}
	f.table.Store(&routing.Table{})
	f.srv = f.server(f.serve)
	return f
}

// server returns a fasthttp server with the data plane's settings.
func (f *Fast) server(h fasthttp.RequestHandler) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       h,
		Name:                          "redblack",
		ReadBufferSize:                64 << 10, // larger headers: 431
		MaxRequestBodySize:            int(f.cfg.MaxBodyBytes),
		ReadTimeout:                   30 * time.Second, // a request (headers and body) must arrive within it: slowloris
		IdleTimeout:                   90 * time.Second,
		DisableHeaderNamesNormalizing: true,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		NoDefaultDate:                 true,
		CloseOnShutdown:               true,
		Logger:                        quiet{},
		ErrorHandler:                  f.requestError,
	}
}

// ServeService serves connections from l for one service, whatever their
// Host header (a service's dedicated port), until the returned server is
// shut down.
func (f *Fast) ServeService(l net.Listener, service string) *fasthttp.Server {
	srv := f.server(func(ctx *fasthttp.RequestCtx) {
		f.route(ctx, f.table.Load().Services[service], service)
	})
	go func() { _ = srv.Serve(l) }()
	return srv
}

// requestError answers a request that could not be read: 431 for headers
// over the read buffer, 413 for a body over the limit, 400 otherwise.
func (f *Fast) requestError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		f.fail(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "request headers too large")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		f.fail(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", f.cfg.MaxBodyBytes))
	default:
		f.fail(ctx, fasthttp.StatusBadRequest, "malformed request: "+err.Error())
	}
}

type quiet struct{}

func (quiet) Printf(string, ...any) {}

// Swap installs a new routing table; requests already routed finish on the
// old one.
func (f *Fast) Swap(t *routing.Table) { f.table.Store(t) }

// Table returns the current table.
func (f *Fast) Table() *routing.Table { return f.table.Load() }

// Serve serves connections from l until Shutdown.
func (f *Fast) Serve(l net.Listener) error { return f.srv.Serve(l) }

// Shutdown stops accepting and waits for requests in flight to finish.
func (f *Fast) Shutdown(ctx context.Context) error { return f.srv.ShutdownWithContext(ctx) }

// CloseIdle closes idle upstream connections of instances no longer in the
// table (drained groups keep none open).
func (f *Fast) CloseIdle() {
	live := map[string]bool{}
	for _, s := range f.table.Load().Services {
		for _, g := range s.Groups {
			for _, b := range g.Backends {
				live[b.Addr] = true
			}
		}
	}
	f.clients.Range(func(k, v any) bool {
		if !live[k.(string)] {
			f.clients.Delete(k)
			v.(*fasthttp.HostClient).CloseIdleConnections()
		}
		return true
	})
}

func (f *Fast) client(addr string) *fasthttp.HostClient {
	if c, ok := f.clients.Load(addr); ok {
		return c.(*fasthttp.HostClient)
	}
	c := &fasthttp.HostClient{
		Addr:                          addr,
		MaxConns:                      4096,
		MaxIdleConnDuration:           f.cfg.IdleConnTimeout,
		ReadTimeout:                   f.cfg.ResponseHeaderTimeout,
		MaxIdemponentCallAttempts:     2, // a stale pooled connection is retried once on the same instance
		StreamResponseBody:            true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		Dial: func(addr string) (net.Conn, error) {
			return net.DialTimeout("tcp", addr, f.cfg.DialTimeout)
		},
	}
	actual, _ := f.clients.LoadOrStore(addr, c)
	return actual.(*fasthttp.HostClient)
}

var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

func (f *Fast) fail(ctx *fasthttp.RequestCtx, code int, reason string) {
	ctx.Response.Reset()
	ctx.Response.Header.Set(ErrorHeader, reason)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetStatusCode(code)
	ctx.SetBodyString(reason + "\n")
}

func (f *Fast) serve(ctx *fasthttp.RequestCtx) {
	f.route(ctx, f.table.Load().LookupBytes(ctx.Host()), "")
}

// route proxies a request to svc (nil: not routed; name says which service
// a dedicated port wanted, "" for the shared port).
func (f *Fast) route(ctx *fasthttp.RequestCtx, svc *routing.Service, name string) {
	if svc == nil {
		reason := fmt.Sprintf("no service is routed for host %q", ctx.Host())
		if name != "" {
			reason = "no route for " + name + " yet"
		}
		f.fail(ctx, fasthttp.StatusServiceUnavailable, reason)
		return
	}
	g := svc.PickGroup()
	if g == nil {
		f.fail(ctx, fasthttp.StatusServiceUnavailable, "no server group of "+svc.Name+" takes traffic")
		return
	}
	if len(g.Backends) == 0 {
		f.fail(ctx, fasthttp.StatusBadGateway, "no healthy instance in "+g.Name)
		return
	}
	req := &ctx.Request
	h := &req.Header
	if len(h.Peek("X-Request-Id")) == 0 {
		var id [24]byte
		h.SetBytesV("X-Request-Id", requestIDInto(id[:]))
	}
	ip := ctx.RemoteIP().String()
	if prior := h.Peek("X-Forwarded-For"); len(prior) > 0 {
		h.Set("X-Forwarded-For", string(prior)+", "+ip)
	} else {
		h.Set("X-Forwarded-For", ip)
	}
	h.Set("X-Forwarded-Proto", "http")
	h.SetBytesV("X-Forwarded-Host", ctx.Host())
	if h.ConnectionUpgrade() {
		f.upgrade(ctx, g)
		return
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	idempotent := h.IsGet() || h.IsHead() || h.IsOptions() || h.IsTrace() || h.IsPut() || h.IsDelete()
	var last *routing.Backend
	for try := 0; ; try++ {
		b := g.Pick(last)
		if b == nil {
			f.fail(ctx, fasthttp.StatusBadGateway, "no healthy instance in "+g.Name)
			return
		}
		b.Inflight.Add(1)
		start := time.Now()
		err := f.client(b.Addr).Do(req, &ctx.Response)
		b.Inflight.Add(-1)
		if err != nil {
			b.Stats.ConnError()
			b.Result(true, f.cfg.EjectAfter, f.cfg.EjectFor)
			if try < f.cfg.Retries && (idempotent || dialFailed(err)) {
				b.Stats.Retries.Add(1)
				last = b
				ctx.Response.Reset()
				continue
			}
			f.fail(ctx, fasthttp.StatusBadGateway, fmt.Sprintf("upstream of %s: %v", g.Name, err))
			return
		}
		status := ctx.Response.StatusCode()
		b.Result(status >= 500, f.cfg.EjectAfter, f.cfg.EjectFor)
		b.Stats.Observe(status, time.Since(start))
		for _, k := range hopHeaders {
			ctx.Response.Header.Del(k)
		}
		return
	}
}

// dialFailed reports whether no byte of the request can have reached the
// instance.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.Is(err, fasthttp.ErrDialTimeout) || (errors.As(err, &op) && op.Op == "dial")
}

// requestIDInto writes 24 random hex digits into dst (len ≥ 24). A request
// id must be unique, not secret: math/rand/v2 draws it without the
// crypto/rand work on the request path.
func requestIDInto(dst []byte) []byte {
	const hexd = "0123456789abcdef"
	hi, lo := rand.Uint64(), rand.Uint32()
	for i := range 16 {
		dst[i] = hexd[hi>>(60-4*i)&15]
	}
	for i := range 8 {
		dst[16+i] = hexd[lo>>(28-4*i)&15]
	}
	return dst[:24]
}

// upgrade passes a WebSocket (or other Upgrade) through: the handshake goes
// to an instance, then bytes are spliced both ways until either side closes.
func (f *Fast) upgrade(ctx *fasthttp.RequestCtx, g *routing.Group) {
	b := g.Pick(nil)
	if b == nil {
		f.fail(ctx, fasthttp.StatusBadGateway, "no healthy instance in "+g.Name)
		return
	}
	up, err := net.DialTimeout("tcp", b.Addr, f.cfg.DialTimeout)
	if err != nil {
		b.Stats.ConnError()
		f.fail(ctx, fasthttp.StatusBadGateway, fmt.Sprintf("upstream of %s: %v", g.Name, err))
		return
	}
	var head bytes.Buffer
	if _, err := ctx.Request.WriteTo(&head); err != nil {
		up.Close()
		f.fail(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	if _, err := up.Write(head.Bytes()); err != nil {
		up.Close()
		f.fail(ctx, fasthttp.StatusBadGateway, err.Error())
		return
	}
	b.Inflight.Add(1)
	start := time.Now()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer func() {
			b.Inflight.Add(-1)
			b.Stats.Observe(fasthttp.StatusSwitchingProtocols, time.Since(start))
		}()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
		<-done
		<-done
		up.Close()
	})
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

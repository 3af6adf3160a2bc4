package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"

	"github.com/redblack/redblack/shared/routing"
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
	tunnels chan struct{} // a slot per spliced connection
	gate    *clientGate   // connections per client address
	bodies  atomic.Int64  // request body bytes buffered now
	h2      *h2           // the HTTP/2 side (h2.go)
}

// NewFast builds the data plane with an empty table.
func NewFast(cfg Config) *Fast {
	cfg.defaults()
	f := &Fast{cfg: cfg, tunnels: make(chan struct{}, cfg.MaxTunnels), gate: newClientGate(cfg.MaxConnsPerClient, cfg.MaxConns)}
	f.table.Store(&routing.Table{})
	f.srv = f.server(f.serve)
	f.h2 = newH2(f)
	return f
}

// CountGRPC sets where gRPC answers are counted by code (default nowhere);
// call it before serving.
func (f *Fast) CountGRPC(c GRPCCounter) { f.h2.grpc = c }

// server returns a fasthttp server with the data plane's settings.
func (f *Fast) server(h fasthttp.RequestHandler) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       h,
		Name:                          "redblack",
		ReadBufferSize:                64 << 10,     // larger headers: 431
		MaxRequestBodySize:            prefetchBody, // longer bodies stream to the handler, which reads them within the budget
		StreamRequestBody:             true,
		Concurrency:                   f.cfg.MaxConns,
		ReadTimeout:                   f.cfg.HeaderTimeout, // from the first byte to the headers' end: slowloris
		HeaderReceived:                f.headerReceived,
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
// Host header (a service's dedicated port), HTTP/1.1 and h2c, until the
// returned server is shut down.
func (f *Fast) ServeService(l net.Listener, service string) *fasthttp.Server {
	srv := f.server(func(ctx *fasthttp.RequestCtx) {
		f.route(ctx, f.table.Load().Services[service], service)
	})
	go func() { _ = srv.Serve(f.sniff(l, f.h2.handler(service), nil)) }()
	return srv
}

// headerReceived gives a request whose headers arrived RequestTimeout for
// its body.
func (f *Fast) headerReceived(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	return fasthttp.RequestConfig{ReadTimeout: f.cfg.RequestTimeout}
}

// Refused returns how many client connections were closed unread, by
// reason (RefusedPerClient, RefusedPressure).
func (f *Fast) Refused() map[string]uint64 {
	return map[string]uint64{
		RefusedPerClient: f.gate.refusedPerClient.Load(),
		RefusedPressure:  f.gate.refusedPressure.Load(),
	}
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

// Serve serves connections from l until Shutdown: HTTP/1.1, and HTTP/2
// from clients that open with its preface (h2c with prior knowledge).
func (f *Fast) Serve(l net.Listener) error { return f.srv.Serve(f.sniff(l, f.h2.handler(""), nil)) }

// ServeTLS serves TLS connections from l with conf's certificates until
// Shutdown: HTTP/2 where the client offers h2 by ALPN, HTTP/1.1 otherwise.
func (f *Fast) ServeTLS(l net.Listener, conf *tls.Config) error {
	conf = conf.Clone()
	conf.NextProtos = []string{http2.NextProtoTLS, "http/1.1"}
	return f.srv.Serve(f.sniff(l, f.h2.handler(""), conf))
}

// Shutdown stops accepting and waits for requests in flight to finish,
// HTTP/2 streams too (their connections are sent GOAWAY).
func (f *Fast) Shutdown(ctx context.Context) error {
	err := f.srv.ShutdownWithContext(ctx)
	return errors.Join(err, f.h2.shutdown(ctx))
}

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
		MaxIdemponentCallAttempts:     2, // a stale pooled connection is retried once on the same instance
		StreamResponseBody:            true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		Dial: func(addr string) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", addr, f.cfg.DialTimeout)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, idle: f.cfg.ResponseHeaderTimeout}, nil
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
	if ctx.IsTLS() {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	h.SetBytesV("X-Forwarded-Host", ctx.Host())
	if h.ConnectionUpgrade() {
		f.upgrade(ctx, g)
		return
	}
	reserved, ok := f.readBody(ctx)
	if !ok {
		return
	}
	defer f.bodies.Add(-reserved)
	for _, k := range hopHeaders {
		h.Del(k)
	}
	idempotent := h.IsGet() || h.IsHead() || h.IsOptions() || h.IsTrace() || h.IsPut() || h.IsDelete()
	var fb *routing.Group
	if !f.cfg.NoRescue {
		fb = svc.Admit(g, f.cfg.RescueRatio)
	}
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
			f.cfg.Done(b, 0, err, 0)
			if f.cfg.Retry(b, try, idempotent, dialFailed(err)) {
				last = b
				ctx.Response.Reset()
				continue
			}
			if f.rescue(ctx, fb, g, b, idempotent || dialFailed(err) || svc.RetryNonIdempotent) {
				return
			}
			f.fail(ctx, fasthttp.StatusBadGateway, fmt.Sprintf("upstream of %s: %v", g.Name, err))
			return
		}
		status := ctx.Response.StatusCode()
		f.cfg.Done(b, status, nil, time.Since(start))
		if status >= 500 && f.rescue(ctx, fb, g, b, idempotent || svc.RetryNonIdempotent) {
			return
		}
		for _, k := range hopHeaders {
			ctx.Response.Header.Del(k)
		}
		return
	}
}

// rescue answers a request that failed on group g (last on backend failed:
// a 5xx, or no answer) from the service's fallback group fb, once, if the
// request may be sent again (allowed) and fb's budget has room. The failed
// try is already counted on g, as the judges must see it; the rescue is
// counted on failed's Rescued once fb answered it. It reports whether the
// response now is fb's.
func (f *Fast) rescue(ctx *fasthttp.RequestCtx, fb, g *routing.Group, failed *routing.Backend, allowed bool) bool {
	b := routing.Rescuer(fb, g, allowed)
	if b == nil {
		return false
	}
	ctx.Response.Reset()
	b.Inflight.Add(1)
	start := time.Now()
	err := f.client(b.Addr).Do(&ctx.Request, &ctx.Response)
	b.Inflight.Add(-1)
	if err != nil {
		f.cfg.Done(b, 0, err, 0)
		ctx.Response.Reset()
		f.fail(ctx, fasthttp.StatusBadGateway, fmt.Sprintf("upstream of %s failed, and of its fallback %s: %v", g.Name, fb.Name, err))
		return true
	}
	status := ctx.Response.StatusCode()
	f.cfg.Done(b, status, nil, time.Since(start))
	if status < 500 {
		failed.Stats.Rescued.Add(1)
	}
	for _, k := range hopHeaders {
		ctx.Response.Header.Del(k)
	}
	ctx.Response.Header.Set(FallbackHeader, fb.Name)
	return true
}

// readBody reads a body longer than the prefetch within the budget: the
// bytes it may take (its Content-Length, or the limit for a chunked one)
// are reserved before it is read, and released by the caller once the
// request is done. It answers 413 or 503 itself and returns false when the
// body is over the limit or does not fit.
func (f *Fast) readBody(ctx *fasthttp.RequestCtx) (int64, bool) {
	req := &ctx.Request
	n := int64(req.Header.ContentLength())
	if n > f.cfg.MaxBodyBytes {
		f.fail(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", f.cfg.MaxBodyBytes))
		return 0, false
	}
	if !req.IsBodyStream() {
		return 0, true // read with the headers, within the prefetch
	}
	need := n
	if need < 0 { // chunked: as much as it may grow to
		need = f.cfg.MaxBodyBytes
	}
	if f.bodies.Add(need) > f.cfg.BodyBudget {
		f.bodies.Add(-need)
		f.fail(ctx, fasthttp.StatusServiceUnavailable, "router busy: request bodies in flight over the budget")
		ctx.SetConnectionClose()
		return 0, false
	}
	body, err := io.ReadAll(io.LimitReader(req.BodyStream(), f.cfg.MaxBodyBytes+1))
	switch {
	case err != nil:
		f.bodies.Add(-need)
		f.fail(ctx, fasthttp.StatusBadRequest, "request body: "+err.Error())
		ctx.SetConnectionClose()
		return 0, false
	case int64(len(body)) > f.cfg.MaxBodyBytes:
		f.bodies.Add(-need)
		f.fail(ctx, fasthttp.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", f.cfg.MaxBodyBytes))
		ctx.SetConnectionClose()
		return 0, false
	}
	req.SetBody(body)
	return need, true
}

// idleConn is an upstream connection whose every read and write must make
// progress within idle: an idle timeout, where a deadline set once would
// cut a long stream that keeps sending.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(p)
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
// to an instance, and only when it answers 101 Switching Protocols are the
// bytes spliced both ways until either side closes. Any other answer is an
// ordinary HTTP response, returned with the router's headers and metrics;
// the client's connection stays with the router.
func (f *Fast) upgrade(ctx *fasthttp.RequestCtx, g *routing.Group) {
	select {
	case f.tunnels <- struct{}{}:
	default:
		f.fail(ctx, fasthttp.StatusServiceUnavailable, fmt.Sprintf("router busy: %d upgraded connections open", cap(f.tunnels)))
		return
	}
	spliced := false
	defer func() {
		if !spliced {
			<-f.tunnels
		}
	}()
	reserved, ok := f.readBody(ctx)
	if !ok {
		return
	}
	defer f.bodies.Add(-reserved) // the body is written upstream before the splice
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
	start := time.Now()
	_ = up.SetDeadline(start.Add(f.cfg.ResponseHeaderTimeout))
	if _, err := up.Write(head.Bytes()); err != nil {
		up.Close()
		b.Stats.ConnError()
		f.fail(ctx, fasthttp.StatusBadGateway, err.Error())
		return
	}
	br := bufio.NewReader(up)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		up.Close()
		b.Stats.ConnError()
		f.fail(ctx, fasthttp.StatusBadGateway, fmt.Sprintf("upstream of %s: %v", g.Name, err))
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// not upgraded: an HTTP answer like any other
		defer up.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, f.cfg.MaxBodyBytes+1))
		resp.Body.Close()
		if err != nil || int64(len(body)) > f.cfg.MaxBodyBytes {
			f.fail(ctx, fasthttp.StatusBadGateway, fmt.Sprintf("upstream of %s: answer to an upgrade request unreadable or over %d bytes", g.Name, f.cfg.MaxBodyBytes))
			return
		}
		ctx.Response.Reset()
		ctx.SetStatusCode(resp.StatusCode)
		for k, vs := range resp.Header {
			for _, v := range vs {
				ctx.Response.Header.Add(k, v)
			}
		}
		for _, k := range hopHeaders {
			ctx.Response.Header.Del(k)
		}
		ctx.SetBody(body)
		f.cfg.Done(b, resp.StatusCode, nil, time.Since(start))
		return
	}
	_ = up.SetDeadline(time.Time{})
	spliced = true
	b.Inflight.Add(1)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer func() {
			<-f.tunnels
			b.Inflight.Add(-1)
			b.Stats.Observe(fasthttp.StatusSwitchingProtocols, time.Since(start))
		}()
		defer up.Close()
		if err := resp.Write(c); err != nil {
			return
		}
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, br); closeWrite(c); done <- struct{}{} }()
		<-done
		<-done
	})
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

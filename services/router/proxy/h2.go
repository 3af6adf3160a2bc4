package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/redblack/redblack/shared/routing"
	"github.com/redblack/redblack/shared/spec"
)

// h2 is the data plane's HTTP/2 side: connections that open with the
// HTTP/2 preface (h2c with prior knowledge) or negotiate h2 by ALPN are
// served by golang.org/x/net/http2 and proxied with net/http/httputil's
// ReverseProxy, which passes trailers and streams both ways. The groups,
// the instances, the retries, the rescues and the samples are the HTTP/1.1
// path's: the same table and the same Rules. A service whose spec says
// protocol h2c or grpc is reached over h2c, any other over HTTP/1.1.
type h2 struct {
	f       *Fast
	srv     *http2.Server
	base    *http.Server // its Shutdown sends GOAWAY on every connection
	rp      *httputil.ReverseProxy
	h1      http.RoundTripper
	h2c     http.RoundTripper
	conns   sync.WaitGroup
	open    atomic.Int64 // HTTP/2 connections served now
	mu      sync.Mutex
	closing bool // shutdown has begun: no connection is served any more
	// GRPC counts gRPC answers by service, group and code (Prometheus).
	grpc GRPCCounter
}

// GRPCCounter counts gRPC answers by service, group and status code.
type GRPCCounter interface {
	Count(service, group string, code int)
}

type noGRPCCounter struct{}

func (noGRPCCounter) Count(string, string, int) {}

func newH2(f *Fast) *h2 {
	p := &h2{f: f, srv: &http2.Server{IdleTimeout: 90 * time.Second}, base: &http.Server{}, grpc: noGRPCCounter{}}
	_ = http2.ConfigureServer(p.base, p.srv)
	dialer := &net.Dialer{Timeout: f.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: c, idle: f.cfg.ResponseHeaderTimeout}, nil
	}
	p.h1 = &http.Transport{
		DialContext: dial, MaxIdleConnsPerHost: 256, IdleConnTimeout: f.cfg.IdleConnTimeout,
		ResponseHeaderTimeout: f.cfg.ResponseHeaderTimeout, DisableCompression: true,
	}
	p.h2c = &http2.Transport{
		AllowHTTP: true, DisableCompression: true, IdleConnTimeout: f.cfg.IdleConnTimeout,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return dial(ctx, network, addr)
		},
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      p,
		FlushInterval:  -1, // streams: every frame as it comes
		ModifyResponse: trailersOnly,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.fail(w, http.StatusBadGateway, err.Error())
		},
		ErrorLog: log.New(io.Discard, "", 0), // a stream cut midway is counted, not logged
	}
	return p
}

// route is what the handler chose for a request, handed to RoundTrip.
type route struct {
	svc   *routing.Service
	g, fb *routing.Group
}

type routeKey struct{}

// handler serves HTTP/2 requests for service ("": by their :authority).
func (p *h2) handler(service string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := p.f.table.Load()
		var svc *routing.Service
		if service != "" {
			svc = t.Services[service]
		} else {
			svc = t.Lookup(r.Host)
		}
		if svc == nil {
			reason := fmt.Sprintf("no service is routed for host %q", r.Host)
			if service != "" {
				reason = "no route for " + service + " yet"
			}
			p.fail(w, http.StatusServiceUnavailable, reason)
			return
		}
		g := svc.PickGroup()
		switch {
		case g == nil:
			p.fail(w, http.StatusServiceUnavailable, "no server group of "+svc.Name+" takes traffic")
			return
		case len(g.Backends) == 0:
			p.fail(w, http.StatusBadGateway, "no healthy instance in "+g.Name)
			return
		case r.ContentLength > p.f.cfg.MaxBodyBytes:
			p.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", p.f.cfg.MaxBodyBytes))
			return
		}
		if !streams(svc.Protocol) {
			// an HTTP service's body is bounded as on HTTP/1.1; a gRPC
			// stream may carry any number of messages
			r.Body = http.MaxBytesReader(w, r.Body, p.f.cfg.MaxBodyBytes)
		}
		var fb *routing.Group
		if !p.f.cfg.NoRescue {
			fb = svc.Admit(g, p.f.cfg.RescueRatio)
		}
		p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), routeKey{}, &route{svc: svc, g: g, fb: fb})))
	})
}

// streams reports whether a protocol's instances speak HTTP/2.
func streams(protocol string) bool {
	return protocol == spec.ProtocolH2C || protocol == spec.ProtocolGRPC
}

func (p *h2) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	if pr.Out.Header.Get("X-Request-Id") == "" {
		var id [24]byte
		pr.Out.Header.Set("X-Request-Id", string(requestIDInto(id[:])))
	}
}

func (p *h2) fail(w http.ResponseWriter, code int, reason string) {
	w.Header().Set(ErrorHeader, reason)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, reason+"\n")
}

// RoundTrip sends the request to an instance of the group the handler
// chose: a try that could not connect goes to another instance (as on
// HTTP/1.1), and a bodiless idempotent request that failed is rescued from
// the fallback group. gRPC calls have bodies: they are retried only when
// no byte of them was sent.
func (p *h2) RoundTrip(req *http.Request) (*http.Response, error) {
	rt, _ := req.Context().Value(routeKey{}).(*route)
	if rt == nil {
		return nil, errors.New("proxy: request not routed")
	}
	tr := p.h1
	if streams(rt.svc.Protocol) {
		tr = p.h2c
	}
	var body *sentBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &sentBody{ReadCloser: req.Body}
		req.Body = body
	}
	resendable := body == nil
	idempotent := routing.Idempotent(req.Method)
	allowed := resendable && (idempotent || rt.svc.RetryNonIdempotent)
	var last *routing.Backend
	for try := 0; ; try++ {
		b := rt.g.Pick(last)
		if b == nil {
			return nil, fmt.Errorf("no healthy instance in %s", rt.g.Name)
		}
		resp, err := p.send(tr, req, rt, b)
		if err != nil {
			unsent := dialFailed(err) && (body == nil || !body.read.Load())
			if p.f.cfg.Retry(b, try, idempotent && resendable, unsent) {
				last = b
				continue
			}
			if fb := routing.Rescuer(rt.fb, rt.g, allowed || unsent); fb != nil {
				return p.rescue(tr, req, rt, b, fb)
			}
			return nil, fmt.Errorf("upstream of %s: %w", rt.g.Name, err)
		}
		if resp.StatusCode >= 500 && allowed {
			if fb := routing.Rescuer(rt.fb, rt.g, true); fb != nil {
				resp.Body.Close() // counts the 5xx on b
				return p.rescue(tr, req, rt, b, fb)
			}
		}
		return resp, nil
	}
}

// rescue answers req from fb, an instance of the fallback group, as the
// HTTP/1.1 path does: the try that failed on failed is counted there, the
// rescue on failed's Rescued once fb answered below 500.
func (p *h2) rescue(tr http.RoundTripper, req *http.Request, rt *route, failed, fb *routing.Backend) (*http.Response, error) {
	resp, err := p.send(tr, req, &route{svc: rt.svc, g: rt.fb}, fb)
	if err != nil {
		return nil, fmt.Errorf("upstream of %s failed, and of its fallback %s: %w", rt.g.Name, rt.fb.Name, err)
	}
	if resp.StatusCode < 500 {
		failed.Stats.Rescued.Add(1)
	}
	resp.Header.Set(FallbackHeader, rt.fb.Name)
	return resp, nil
}

// send is one try on b. The response's body reports the outcome when it
// ends: the HTTP status, or for gRPC the grpc-status of its trailers (or
// of its headers, for a trailers-only answer), mapped by GRPCStatus.
func (p *h2) send(tr http.RoundTripper, req *http.Request, rt *route, b *routing.Backend) (*http.Response, error) {
	out := *req
	u := *req.URL
	u.Host = b.Addr
	out.URL = &u
	b.Inflight.Add(1)
	start := time.Now()
	resp, err := tr.RoundTrip(&out)
	if err != nil {
		b.Inflight.Add(-1)
		p.lost(req.Context(), b, err, time.Since(start))
		return nil, err
	}
	resp.Body = &outcome{ReadCloser: resp.Body, p: p, ctx: req.Context(), rt: rt, b: b, resp: resp, took: time.Since(start)}
	return resp, nil
}

// lost counts a try on b that got no answer, or not all of it: the
// instance's failure, unless the caller left first (its request's context
// ended: a client's own deadline or cancel), which is a 499, no error.
func (p *h2) lost(ctx context.Context, b *routing.Backend, err error, took time.Duration) {
	if ctx.Err() != nil {
		p.f.cfg.Done(b, 499, nil, took)
		return
	}
	p.f.cfg.Done(b, 0, err, 0)
}

// outcome is an instance's response body: once it ends (or is closed),
// its status is counted on the instance.
type outcome struct {
	io.ReadCloser
	p    *h2
	ctx  context.Context // the caller's request
	rt   *route
	b    *routing.Backend
	resp *http.Response
	took time.Duration
	once sync.Once
}

func (o *outcome) Read(buf []byte) (int, error) {
	n, err := o.ReadCloser.Read(buf)
	switch {
	case errors.Is(err, io.EOF):
		o.done(nil, true)
	case err != nil:
		o.done(err, false)
	}
	return n, err
}

func (o *outcome) Close() error {
	err := o.ReadCloser.Close()
	o.done(nil, false)
	return err
}

// done counts the answer once: err when the stream broke, else its status
// (ended: its trailers have come).
func (o *outcome) done(err error, ended bool) {
	o.once.Do(func() {
		o.b.Inflight.Add(-1)
		if err != nil {
			o.p.lost(o.ctx, o.b, err, o.took)
			return
		}
		status := o.resp.StatusCode
		if isGRPC(o.resp) && status == http.StatusOK {
			code := o.resp.Header.Get("Grpc-Status")
			if code == "" {
				code = o.resp.Trailer.Get("Grpc-Status")
			}
			n, cerr := strconv.Atoi(code)
			switch {
			case cerr == nil:
				status = GRPCStatus(n)
				o.p.grpc.Count(o.rt.svc.Name, o.rt.g.Name, n)
			case !ended:
				status = 499 // the caller left before the call's status came
			default:
				status = http.StatusBadGateway // a gRPC answer with no status
			}
		}
		o.p.f.cfg.Done(o.b, status, nil, o.took)
	})
}

// grpcTrailers are the trailers that end a gRPC call.
var grpcTrailers = []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"}

// trailersOnly turns a gRPC "trailers-only" answer (the status in the
// headers of a stream that ends with them) into headers and trailers: the
// proxy flushes its headers before it knows the stream has ended, and a
// gRPC client wants the status after them.
func trailersOnly(resp *http.Response) error {
	if !isGRPC(resp) || resp.Header.Get("Grpc-Status") == "" {
		return nil
	}
	if resp.Trailer == nil {
		resp.Trailer = http.Header{}
	}
	for _, k := range grpcTrailers {
		if v, ok := resp.Header[k]; ok {
			resp.Trailer[k] = v
			delete(resp.Header, k)
		}
	}
	return nil
}

func isGRPC(resp *http.Response) bool {
	return strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc")
}

// GRPCStatus maps a gRPC status code to the HTTP status the samples count,
// so that the judges see a server's failures as 5xx, whatever the
// protocol: UNKNOWN, INTERNAL and DATA_LOSS are 500, UNIMPLEMENTED 501,
// UNAVAILABLE 503 and DEADLINE_EXCEEDED 504; OK is 200, CANCELLED 499 and
// RESOURCE_EXHAUSTED 429; the codes that blame the request are 400.
func GRPCStatus(code int) int {
	switch code {
	case 0:
		return http.StatusOK
	case 1:
		return 499
	case 2, 13, 15:
		return http.StatusInternalServerError
	case 4:
		return http.StatusGatewayTimeout
	case 8:
		return http.StatusTooManyRequests
	case 12:
		return http.StatusNotImplemented
	case 14:
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

// sentBody is a request body that knows whether any of it was read (sent).
type sentBody struct {
	io.ReadCloser
	read atomic.Bool
}

func (s *sentBody) Read(p []byte) (int, error) {
	s.read.Store(true)
	return s.ReadCloser.Read(p)
}

// serveConn serves one HTTP/2 connection until it closes; one over
// MaxConns is closed at once.
func (p *h2) serveConn(c net.Conn, h http.Handler) {
	if p.open.Add(1) > int64(p.f.cfg.MaxConns) {
		p.open.Add(-1)
		c.Close()
		return
	}
	p.mu.Lock()
	if p.closing { // sorted while shutdown began: conns.Wait may be running
		p.mu.Unlock()
		p.open.Add(-1)
		c.Close()
		return
	}
	p.conns.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.conns.Done()
		defer p.open.Add(-1)
		p.srv.ServeConn(c, &http2.ServeConnOpts{BaseConfig: p.base, Handler: h})
	}()
}

// shutdown sends GOAWAY on every HTTP/2 connection and waits for their
// streams to end, or for ctx.
func (p *h2) shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	_ = p.base.Shutdown(ctx)
	done := make(chan struct{})
	go func() { p.conns.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

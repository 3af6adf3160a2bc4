// Package lb is the discovery client of inner tiers: an application embeds
// it to call other services of the mesh the way the router calls them,
// with no central hop (Eureka with Ribbon, in the seed's words).
//
// A Client follows the routes and instances buckets into a routing table
// (shared/routing, the router's own code): a service's group is picked by
// the route's weights and an instance in it by least outstanding requests,
// skipping ejected ones. A red/black switch, a canary's share or a rollback
// of the called service therefore takes effect in every caller as soon as
// the bucket says so. A request whose connection fails is retried on
// another instance with the router's rules, failing instances are ejected,
// and per-group samples go to metrics.<service>.<group> as the router's
// do, so the canary judge and the watchdog judge an inner tier unchanged.
//
// The client answers the routers' applied ping (subjects.CallerApplied) and
// registers with NATS micro as "redblack-caller": a switch of a service it
// calls is announced only once it routes by it, or after the router's
// bounded wait, which names it in fleet.<svc>.traffic.lagging.
package lb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/rolling"
	"github.com/redblack/redblack/shared/routing"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// Version of the client, as its micro registration reports it.
const Version = "0.1.0"

// Config configures a Client.
type Config struct {
	// ID names this caller in its samples and its answers to the routers
	// (default "caller-" and 8 random characters).
	ID string
	// Caller is the service whose instances this client runs in: its
	// samples are published as subjects.CallerPublisher(Caller), the only
	// publisher its NATS user may publish as (FromEnv's default:
	// $REDBLACK_SERVICE, which the provisioner sets).
	Caller string
	// Rules retry and eject as the router does (its defaults).
	Rules routing.Rules
	// Services this client calls: samples are published for these only,
	// as its NATS user may publish no others (auth.CallerPermissions).
	// Empty: every service it has sent a request to.
	Services []string
	// MetricsInterval is how often samples are published (default 1 s,
	// at least 100 ms).
	MetricsInterval time.Duration
	// HTTP sends the requests of Do (default: keep-alive, a 2 s dial
	// timeout and a 30 s wait for response headers).
	HTTP *http.Client
	Log  zerolog.Logger
}

// Errors of a call that found nowhere to go. They are returned as they
// are by Pick, and wrapped with the service's name by Do.
var (
	ErrNoService  = errors.New("lb: no route for the service")
	ErrNoGroup    = errors.New("lb: no server group of the service takes traffic")
	ErrNoInstance = errors.New("lb: no healthy instance in the service's group")
)

// Client routes an application's calls to other services.
type Client struct {
	cfg      Config
	reg      *routing.Registry
	table    atomic.Pointer[routing.Table]
	follower *routing.Follower
	stop     context.CancelFunc
	done     chan struct{}
	sub      *nats.Subscription
	svc      micro.Service
	called   sync.Map // service name → true, once a request went to it
}

// Start follows the buckets on nc (which it does not own) and returns once
// the first table is built. Close stops it.
func Start(ctx context.Context, nc *nats.Conn, cfg Config) (*Client, error) {
	if cfg.ID == "" {
		cfg.ID = "caller-" + events.NewID()[:8]
	}
	cfg.Rules = cfg.Rules.WithDefaults()
	if cfg.MetricsInterval == 0 {
		cfg.MetricsInterval = time.Second
	}
	cfg.MetricsInterval = max(cfg.MetricsInterval, 100*time.Millisecond)
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       50 * time.Second, // shorter than the instances' keep-alive, as the router's
			ResponseHeaderTimeout: 30 * time.Second,
		}}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("lb: %w", err)
	}
	c := &Client{cfg: cfg, reg: routing.NewRegistry(), done: make(chan struct{})}
	c.table.Store(&routing.Table{})
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var routesKV, instances jetstream.KeyValue
	if routesKV, err = natsx.Bucket(bctx, js, topology.BucketRoutes); err != nil {
		return nil, fmt.Errorf("lb: %w", err)
	}
	if instances, err = natsx.Bucket(bctx, js, topology.BucketInstances); err != nil {
		return nil, fmt.Errorf("lb: %w", err)
	}
	run, stop := context.WithCancel(context.Background())
	c.stop = stop
	c.follower = &routing.Follower{Routes: routesKV, Instances: instances, Registry: c.reg, Swap: c.table.Store, Log: cfg.Log}
	if err := c.follower.Start(run); err != nil {
		stop()
		return nil, fmt.Errorf("lb: %w", err)
	}
	if c.sub, err = routing.AnswerApplied(nc, subjects.CallerApplied, cfg.ID, c.table.Load); err != nil {
		stop()
		return nil, fmt.Errorf("lb: %w", err)
	}
	started := time.Now().UTC()
	if c.svc, err = natsx.AddMicro(nc, natsx.MicroConfig{Name: routing.CallerMicro, Version: Version,
		Description: "a discovery client: routes an application's calls to inner tiers",
		Status: func() any {
			return natsx.Status{Service: routing.CallerMicro, Version: Version, Started: started, Parts: map[string]string{"id": cfg.ID}}
		}, Log: cfg.Log}); err != nil {
		_ = c.sub.Unsubscribe()
		stop()
		return nil, fmt.Errorf("lb: %w", err)
	}
	pub := &routing.Publisher{JS: js, Source: cfg.ID, Kind: subjects.CallerPublisher(cfg.Caller), Registry: c.reg, Table: c.table.Load, Interval: cfg.MetricsInterval, Only: c.publishes, Log: cfg.Log}
	go func() {
		defer close(c.done)
		pub.Run(run)
	}()
	return c, nil
}

// publishes reports whether samples of service are published.
func (c *Client) publishes(service string) bool {
	if len(c.cfg.Services) > 0 {
		return slices.Contains(c.cfg.Services, service)
	}
	_, ok := c.called.Load(service)
	return ok
}

// ID is the caller's id, as its samples and its answers to the routers
// name it.
func (c *Client) ID() string { return c.cfg.ID }

// Revision is the routes revision of service that the client routes by
// (0: no route).
func (c *Client) Revision(service string) uint64 {
	if s := c.table.Load().Services[service]; s != nil {
		return s.Revision
	}
	return 0
}

// Close stops following and publishing, and leaves the applied ping and
// the micro registration.
func (c *Client) Close() {
	_ = c.svc.Stop()
	_ = c.sub.Unsubscribe()
	c.stop()
	<-c.done
}

// Pick chooses an instance of service as the router would: a group by the
// route's weights, then the instance with the fewest requests in flight
// from this client, skipping ejected ones. The lookup is local and
// allocates nothing. The instance counts the request as in flight until
// Done reports its outcome.
func (c *Client) Pick(service string) (*routing.Backend, error) {
	b, _, _, err := c.pick(service)
	if err != nil {
		return nil, err
	}
	b.Inflight.Add(1)
	return b, nil
}

// Done reports the outcome of a request sent to b (from Pick): the
// response's status, or err when none came, after took. It feeds the
// ejection and the samples.
func (c *Client) Done(b *routing.Backend, status int, err error, took time.Duration) {
	b.Inflight.Add(-1)
	c.cfg.Rules.Done(b, status, err, took)
}

// pick chooses a group of service and an instance in it.
func (c *Client) pick(service string) (*routing.Backend, *routing.Group, *routing.Service, error) {
	s := c.table.Load().Services[service]
	if s == nil {
		return nil, nil, nil, ErrNoService
	}
	g := s.PickGroup()
	if g == nil {
		return nil, nil, s, ErrNoGroup
	}
	if len(c.cfg.Services) == 0 {
		if _, ok := c.called.Load(service); !ok {
			c.called.Store(service, true)
		}
	}
	b := g.Pick(nil)
	if b == nil {
		return nil, g, s, ErrNoInstance
	}
	return b, g, s, nil
}

// Do sends req to the service named by its URL's host (http://api/path
// goes to service api; a port is ignored), keeping the path, the query and
// the headers, with Host set to the service's name. A connection that
// fails is tried again on another instance of the same group, as the
// router does: for an idempotent method whose body can be sent again
// (GetBody), or for any request whose connection was never made. A
// request that still failed (a 5xx, or no answer) is answered from the
// service's fallback group when there is one (a rescue, as the router
// does: production during a canary, the previous group after a switch
// while it is alive). The latency recorded is the time to the response's
// headers. A request the caller cancels is not held against the instance.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	service := req.URL.Hostname()
	_, g, svc, err := c.pick(service)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, service)
	}
	resendable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	idempotent := resendable && routing.Idempotent(req.Method)
	fb := svc.Admit(g, routing.RescueRatio)
	var last *routing.Backend
	for try := 0; ; try++ {
		b := g.Pick(last)
		if b == nil {
			return nil, fmt.Errorf("%w: %s", ErrNoInstance, g.Name)
		}
		resp, took, err := c.send(req, service, b, try > 0)
		if err != nil {
			if req.Context().Err() != nil {
				return nil, err // the caller gave up: no verdict on the instance
			}
			c.cfg.Rules.Done(b, 0, err, 0)
			if resendable && c.cfg.Rules.Retry(b, try, idempotent, dialFailed(err)) {
				last = b
				continue
			}
			if r, ok := c.rescue(req, service, fb, g, b, resendable && (idempotent || dialFailed(err) || svc.RetryNonIdempotent)); ok {
				return r, nil
			}
			return nil, fmt.Errorf("lb: %s in %s: %w", service, g.Name, err)
		}
		c.cfg.Rules.Done(b, resp.StatusCode, nil, took)
		if resp.StatusCode >= 500 {
			if r, ok := c.rescue(req, service, fb, g, b, resendable && (idempotent || svc.RetryNonIdempotent)); ok {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				return r, nil
			}
		}
		return resp, nil
	}
}

// ErrNoSlot: no instance of the key's slot is up (it is being replaced)
// or the service is not stateful; DoKey waits for one until its deadline.
var ErrNoSlot = errors.New("lb: no instance of the key's slot is up")

// SlotRetry is how often DoKey tries a slot again while it has no
// instance up or its instance fails; SlotWait bounds a DoKey whose
// request has no deadline.
const (
	SlotRetry = 25 * time.Millisecond
	SlotWait  = 30 * time.Second
)

// DoKey sends req to the instance that holds key in a stateful service
// (strategy rolling), the service named by req's URL host: the key is
// hashed over the service's slots (rolling.SlotOf, the count from
// discovery), and the slot's instance is whichever group runs it, the old
// version's or the new one's. While the slot has no instance up (a rolling
// release replaces it: the old process must exit before the new one opens
// the volume), or its instance fails (no answer, 502, 503 or 504), the
// request is tried again every SlotRetry until req's context ends, if it
// can be: an idempotent method (PUT is) with a body it can send again, or
// a connection never made. The caller's deadline bounds the wait
// (SlotWait when it has none).
func (c *Client) DoKey(req *http.Request, key string) (*http.Response, error) {
	service := req.URL.Hostname()
	resendable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	idempotent := resendable && routing.Idempotent(req.Method)
	ctx := req.Context()
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, SlotWait)
		req = req.WithContext(ctx)
	}
	answered := false
	defer func() {
		if !answered {
			cancel()
		}
	}()
	var last *routing.Backend
	var lastErr error
	for try := 0; ; try++ {
		s := c.table.Load().Services[service]
		var b *routing.Backend
		switch {
		case s == nil:
			return nil, fmt.Errorf("%w: %s", ErrNoService, service)
		case s.SlotCount == 0:
			return nil, fmt.Errorf("%w: %s is not stateful (no slots in discovery)", ErrNoSlot, service)
		default:
			slot := rolling.SlotName(service, rolling.SlotOf(key, s.SlotCount))
			bs := s.BySlot(slot, last)
			if len(bs) == 0 {
				bs = s.BySlot(slot, nil) // the one that failed, if it is all there is
			}
			if len(bs) > 0 {
				b = bs[0]
			} else {
				lastErr = fmt.Errorf("%w: %s", ErrNoSlot, slot)
			}
		}
		if _, ok := c.called.Load(service); !ok && len(c.cfg.Services) == 0 {
			c.called.Store(service, true)
		}
		if b != nil {
			resp, took, err := c.send(req, service, b, try > 0)
			switch {
			case err != nil && ctx.Err() != nil:
				return nil, err // the caller gave up: no verdict on the instance
			case err != nil:
				c.cfg.Rules.Done(b, 0, err, 0)
				if !idempotent && !(resendable && dialFailed(err)) {
					return nil, fmt.Errorf("lb: %s in %s: %w", service, b.Group, err)
				}
				last, lastErr = b, err
			default:
				c.cfg.Rules.Done(b, resp.StatusCode, nil, took)
				if !idempotent || (resp.StatusCode != http.StatusBadGateway && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusGatewayTimeout) {
					answered, resp.Body = true, cancelOnClose{resp.Body, cancel}
					return resp, nil
				}
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				last, lastErr = b, fmt.Errorf("lb: %s in %s: %s", service, b.Group, resp.Status)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%w)", lastErr, ctx.Err())
		case <-time.After(SlotRetry):
		}
	}
}

// cancelOnClose ends a request's own deadline when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// send sends one try of req to b, with the body again for a retry.
func (c *Client) send(req *http.Request, service string, b *routing.Backend, again bool) (*http.Response, time.Duration, error) {
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host, out.RequestURI = "http", b.Addr, service, ""
	if again && req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, 0, fmt.Errorf("lb: %s: body for a retry: %w", service, err)
		}
		out.Body = body
	}
	b.Inflight.Add(1)
	start := time.Now()
	resp, err := c.cfg.HTTP.Do(out)
	b.Inflight.Add(-1)
	return resp, time.Since(start), err
}

// rescue sends a request that failed on group g (last on backend failed)
// to the service's fallback group fb, once, as the router does (see
// shared/routing's rescue.go): if it may be sent again (allowed) and fb's
// budget has room. The failed try is already counted on g; the rescue is
// counted on failed once fb answered it below 500, and the response says
// so in routing.FallbackHeader.
func (c *Client) rescue(req *http.Request, service string, fb, g *routing.Group, failed *routing.Backend, allowed bool) (*http.Response, bool) {
	b := routing.Rescuer(fb, g, allowed)
	if b == nil {
		return nil, false
	}
	resp, took, err := c.send(req, service, b, true)
	if err != nil {
		c.cfg.Rules.Done(b, 0, err, 0)
		return nil, false
	}
	c.cfg.Rules.Done(b, resp.StatusCode, nil, took)
	if resp.StatusCode < 500 {
		failed.Stats.Rescued.Add(1)
	}
	resp.Header.Set(routing.FallbackHeader, fb.Name)
	return resp, true
}

// dialFailed reports whether no byte of the request can have reached the
// instance: its connection was never made.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

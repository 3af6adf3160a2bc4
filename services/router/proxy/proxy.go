// Package proxy is the router's HTTP data plane: a reverse proxy that picks a
// server group by weight and an instance in it from the current routing
// table, retries a request whose connection failed on another instance,
// ejects failing instances, and records per-instance metrics.
package proxy

import (
	"time"

	"github.com/redblack/redblack/shared/routing"
)

// Config tunes the data plane.
type Config struct {
	// MaxBodyBytes bounds a request body (413 above it; default 10 MiB).
	MaxBodyBytes int64
	// Rules retry a failed connection on other instances and eject
	// failing ones, as the discovery client does.
	routing.Rules
	// RescueRatio bounds what a service's fallback group serves, its own
	// requests and the rescues together, as a share of the service's
	// requests (default routing.RescueRatio); NoRescue turns rescues off.
	RescueRatio float64
	NoRescue    bool
	// DialTimeout, ResponseHeaderTimeout and IdleConnTimeout of upstream
	// connections (defaults 2 s, 30 s, 50 s — shorter than the backends'
	// keep-alive so the proxy closes idle connections first and never
	// reuses one the backend closed). ResponseHeaderTimeout is an idle
	// timeout: the longest an instance may send nothing, while the router
	// waits for the response's headers or in the middle of a streamed
	// body; a stream that keeps sending is never cut.
	DialTimeout, ResponseHeaderTimeout, IdleConnTimeout time.Duration
	// MaxConns bounds the client connections served at once (default
	// 10000); one more is answered 503 and closed.
	MaxConns int
	// MaxConnsPerClient bounds the connections one client address (an
	// IPv6 client's /64) holds open (default DefaultMaxConnsPerClient;
	// negative for none, behind a proxy that is every client's address);
	// one more is closed before a byte is read. Above 90 % of MaxConns an
	// address that holds 8 gets no more, so the rest go to new clients.
	MaxConnsPerClient int
	// HeaderTimeout bounds the time from a request's first byte (a new
	// connection's opening) to the end of its headers (default 10 s);
	// RequestTimeout, from then to the end of its body (default 30 s).
	HeaderTimeout, RequestTimeout time.Duration
	// MaxTunnels bounds the upgraded connections (WebSockets) spliced at
	// once (default 1024); one more is answered 503.
	MaxTunnels int
	// BodyBudget bounds the request body bytes buffered at once over all
	// requests (default 256 MiB); a request whose body does not fit is
	// answered 503 before its body is read. Bodies up to 64 KiB are read
	// with the headers and count against MaxConns instead.
	BodyBudget int64
}

// DefaultMaxConnsPerClient is MaxConnsPerClient's default: far above what
// a browser (6) or a load test opens, and at the 64 KiB read buffer of a
// connection that sent a partial request, 32 MiB for an address holding
// them all.
const DefaultMaxConnsPerClient = 512

// prefetchBody is the part of a body read with the headers; a longer body
// is read by the handler, within the budget.
const prefetchBody = 64 << 10

func (c *Config) defaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 10 << 20
	}
	c.Rules = c.Rules.WithDefaults()
	if c.RescueRatio <= 0 {
		c.RescueRatio = routing.RescueRatio
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
	if c.MaxConns == 0 {
		c.MaxConns = 10000
	}
	if c.MaxConnsPerClient == 0 {
		c.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = 10 * time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.MaxTunnels == 0 {
		c.MaxTunnels = 1024
	}
	if c.BodyBudget == 0 {
		c.BodyBudget = 256 << 20
	}
}

// ErrorHeader carries the router's reason for an error it answered itself.
const ErrorHeader = "X-Redblack-Error"

// FallbackHeader names the group that answered a rescued request.
const FallbackHeader = routing.FallbackHeader

package routing

import (
	"net/http"
	"time"
)

// Rules are the retry and passive-ejection rules of every caller that
// routes from a table: the router and the discovery client.
type Rules struct {
	// Retries after a failed connection, on other instances (default 2).
	Retries int
	// EjectAfter consecutive failures eject an instance (default 5) for
	// EjectFor, doubling on repeats (default 1 s).
	EjectAfter int32
	EjectFor   time.Duration
}

// WithDefaults returns r with its zero fields set to the defaults.
func (r Rules) WithDefaults() Rules {
	if r.Retries == 0 {
		r.Retries = 2
	}
	if r.EjectAfter == 0 {
		r.EjectAfter = 5
	}
	if r.EjectFor == 0 {
		r.EjectFor = time.Second
	}
	return r
}

// Done records one try on b: its response's status, or err when no
// response came. A 5xx or an error counts towards b's ejection.
func (r Rules) Done(b *Backend, status int, err error, took time.Duration) {
	if err != nil {
		b.Stats.ConnError()
		b.Result(true, r.EjectAfter, r.EjectFor)
		return
	}
	b.Result(status >= 500, r.EjectAfter, r.EjectFor)
	b.Stats.Observe(status, took)
}

// Retry reports whether a try on b that got no response goes to another
// instance: within the retries, and only for an idempotent request or one
// of which no byte was sent. A retry is counted on b.
func (r Rules) Retry(b *Backend, try int, idempotent, unsent bool) bool {
	if try >= r.Retries || !(idempotent || unsent) {
		return false
	}
	b.Stats.Retries.Add(1)
	return true
}

// Idempotent reports whether a request of method may be sent twice: GET
// (also "", as net/http's client reads it), HEAD, OPTIONS, TRACE, PUT and
// DELETE.
func Idempotent(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

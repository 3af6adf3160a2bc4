package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ChainHeader carries the chain of versions that served a request, e.g.
// "edge v3 → api v2 → store v1": each tier's service and version, then
// its downstream services' chains (several in brackets).
const ChainHeader = "X-Chain"

// Caller sends a request to the service its URL's host names: the
// discovery client (shared/discovery/lb) in production, anything with the
// same method in tests.
type Caller interface {
	Do(*http.Request) (*http.Response, error)
}

// DownstreamTimeout bounds one call to a downstream service.
const DownstreamTimeout = 10 * time.Second

// callDownstream calls every downstream service in order and returns this
// tier's chain; the first failure (no answer, or a 5xx) is returned as the
// error, and the request fails: a tier never hides its downstream's
// errors from its callers, nor from the judges of its own release.
func (a *App) callDownstream(r *http.Request) (string, error) {
	self := a.cfg.Service + " " + a.cfg.Version
	if len(a.cfg.Downstream) == 0 {
		return self, nil
	}
	chains := make([]string, 0, len(a.cfg.Downstream))
	for _, ds := range a.cfg.Downstream {
		ctx, cancel := context.WithTimeout(r.Context(), DownstreamTimeout)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ds+"/", nil)
		if err != nil {
			cancel()
			return "", err
		}
		if id := r.Header.Get("X-Request-Id"); id != "" {
			req.Header.Set("X-Request-Id", id)
		}
		resp, err := a.cfg.Caller.Do(req)
		if err != nil {
			cancel()
			return "", fmt.Errorf("%s: downstream %s: %v", a.cfg.Service, ds, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		cancel()
		if resp.StatusCode >= 500 {
			return "", fmt.Errorf("%s: downstream %s answered %d: %s", a.cfg.Service, ds, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		chain := resp.Header.Get(ChainHeader)
		if chain == "" {
			chain = ds + " ?"
		}
		chains = append(chains, chain)
	}
	if len(chains) == 1 {
		return self + " → " + chains[0], nil
	}
	return self + " → [" + strings.Join(chains, ", ") + "]", nil
}

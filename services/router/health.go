package router

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
)

// StaleLogEvery is how often a router cut off from NATS says again that it
// still serves its last tables, and how stale they are.
const StaleLogEvery = 10 * time.Second

// Health is the router's /healthz: the data plane serves from its last
// routing tables whether or not NATS is reachable; Stale says since when
// those tables may be behind.
type Health struct {
	// Status is "ok", or "stale" while NATS is unreachable.
	Status string `json:"status"`
	// NATS is the connection's state (CONNECTED, RECONNECTING, …).
	NATS string `json:"nats"`
	// StaleSince is when NATS was lost (absent while connected).
	StaleSince *time.Time `json:"stale_since,omitempty"`
	// StaleSeconds is how long the tables have been possibly behind.
	StaleSeconds float64 `json:"stale_seconds"`
	// Addr is the data plane's address.
	Addr string `json:"addr"`
}

// Health reports the data plane's state now.
func (s *Service) Health() Health {
	h := Health{Status: "ok", NATS: s.nc.Status().String()}
	if a := s.Addr(); a != nil {
		h.Addr = a.String()
	}
	if since := s.staleSince.Load(); since != 0 {
		t := time.Unix(0, since).UTC()
		h.Status, h.StaleSince, h.StaleSeconds = "stale", &t, time.Since(t).Seconds()
	}
	return h
}

// serveHealth answers GET /healthz with Health as JSON, 200 in either
// state: a router that lost NATS still routes, and a load balancer in front
// must not take it out for that.
func (s *Service) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Health())
}

// watchStaleness follows the NATS connection: when it is lost the tables
// stop following the buckets, which the log says at once and then every
// StaleLogEvery with how stale they are, until it is back.
func (s *Service) watchStaleness(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var lost, said time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			connected := s.nc.Status() == nats.CONNECTED
			switch {
			case !connected && lost.IsZero():
				lost, said = now, now
				s.staleSince.Store(now.UnixNano())
				s.log.Warn().Str("nats", s.nc.Status().String()).Msg("NATS lost: serving the last routing tables")
			case !connected && now.Sub(said) >= StaleLogEvery:
				said = now
				s.log.Warn().Dur("stale", now.Sub(lost).Round(time.Millisecond)).Msg("NATS still lost: serving the last routing tables")
			case connected && !lost.IsZero():
				s.log.Info().Dur("stale", now.Sub(lost).Round(time.Millisecond)).Msg("NATS back: the routing tables follow the buckets again")
				lost = time.Time{}
				s.staleSince.Store(0)
			}
		}
	}
}

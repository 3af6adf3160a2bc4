// Package prom is how every redblack service exports Prometheus metrics:
// with client_golang, each service's own collectors on a registry that also
// holds the process and Go runtime collectors, served in the text format.
package prom

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/redblack/redblack/shared/procfs"
)

// Namespace prefixes every redblack metric.
const Namespace = "redblack"

// DefaultAdmin is the default address of an admin port (/metrics): `up`'s
// and each service binary's.
const DefaultAdmin = "127.0.0.1:9180"

// Exporter is a service with metrics of its own.
type Exporter interface {
	// Collectors are the service's metrics, registered once.
	Collectors() []prometheus.Collector
}

// NewRegistry returns a registry holding the process and Go collectors and
// the collectors of every exporter given.
func NewRegistry(exporters ...Exporter) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	for _, e := range exporters {
		if err := Register(reg, e); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// Register registers an exporter's collectors.
func Register(reg prometheus.Registerer, e Exporter) error {
	for _, c := range e.Collectors() {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("prom: %w", err)
		}
	}
	return nil
}

// Handler serves g in the Prometheus text format.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Serve listens on addr and serves g on /metrics (and mux's other
// handlers, if mux is not nil) until the server is closed.
func Serve(addr string, g prometheus.Gatherer, mux *http.ServeMux) (*http.Server, net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("admin port: %w", procfs.ExplainInUse(addr, err))
	}
	if mux == nil {
		mux = http.NewServeMux()
	}
	mux.Handle("/metrics", Handler(g))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	return srv, l.Addr(), nil
}

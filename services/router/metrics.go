package router

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/redblack/redblack/services/router/proxy"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/prom"
	"github.com/redblack/redblack/shared/routing"
	"github.com/redblack/redblack/shared/subjects"
)

// serveAdmin serves the router's own registry on /metrics and its Health
// on /healthz.
func (s *Service) serveAdmin() (*http.Server, error) {
	reg, err := prom.NewRegistry(s)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.serveHealth)
	srv, _, err := prom.Serve(s.cfg.Admin, reg, mux)
	return srv, err
}

// Collectors are the router's metrics: the counts and latency histogram of
// every instance in the registry, read from its atomic counters when
// scraped (the hot path takes no lock for them), and the gRPC answers by
// status code.
func (s *Service) Collectors() []prometheus.Collector {
	cs := []prometheus.Collector{backendCollector{s.reg}, s.grpc}
	for _, reason := range []string{proxy.RefusedPerClient, proxy.RefusedPressure} {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        prom.Namespace + "_router_connections_refused_total",
			Help:        "Client connections closed before a byte was read: per_client, over --max-conns-per-client from one address; pressure, near the connection cap from an address that held several.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(s.proxy.Refused()[reason]) }))
	}
	return cs
}

// newGRPCCounter counts gRPC answers by service, group and code name.
func newGRPCCounter() grpcCounter {
	return grpcCounter{prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: prom.Namespace + "_router_grpc_responses_total",
		Help: "gRPC answers by status code (the samples count UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS as 5xx).",
	}, []string{"service", "group", "code"})}
}

// grpcCounter is proxy.GRPCCounter on a Prometheus counter.
type grpcCounter struct{ *prometheus.CounterVec }

// Count counts one answer.
func (c grpcCounter) Count(service, group string, code int) {
	c.WithLabelValues(service, group, codes.Code(code).String()).Inc()
}

var (
	// backendLabels: backend_instance, not instance, which Prometheus
	// sets on every series to the scraped target (a series' own instance
	// would be renamed exported_instance)
	backendLabels = []string{"service", "group", "backend_instance"}
	backendCounts = []struct {
		desc *prometheus.Desc
		get  func(routing.Snapshot) uint64
	}{
		{promDesc("requests_total", "Requests sent to an instance."), func(s routing.Snapshot) uint64 { return s.Requests }},
		{promDesc("connection_errors_total", "Requests that got no response."), func(s routing.Snapshot) uint64 { return s.ConnErrors }},
		{promDesc("retries_total", "Requests retried on another instance after failing on this one."), func(s routing.Snapshot) uint64 { return s.Retries }},
		{promDesc("rescued_total", "Requests that failed on this instance and were answered from the fallback group."), func(s routing.Snapshot) uint64 { return s.Rescued }},
	}
	// backendResponses is one metric with the status class as its code
	// label (2xx, 3xx, 4xx, 5xx), so that a ratio is one query
	backendResponses = prometheus.NewDesc(prom.Namespace+"_router_responses_total", "Responses by status class (code: 2xx, 3xx, 4xx, 5xx).",
		append(append([]string{}, backendLabels...), "code"), nil)
	responseClasses = []struct {
		code string
		get  func(routing.Snapshot) uint64
	}{
		{"2xx", func(s routing.Snapshot) uint64 { return s.Status2xx }},
		{"3xx", func(s routing.Snapshot) uint64 { return s.Status3xx }},
		{"4xx", func(s routing.Snapshot) uint64 { return s.Status4xx }},
		{"5xx", func(s routing.Snapshot) uint64 { return s.Status5xx }},
	}
	backendLatency = promDesc("latency_seconds", "Response latency.")
	backendsDesc   = prometheus.NewDesc(prom.Namespace+"_router_backends", "Instances in the router's registry.", nil, nil)
)

func promDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prom.Namespace+"_router_"+name, help, backendLabels, nil)
}

// backendCollector reads the registry's backends at scrape time.
type backendCollector struct{ reg *routing.Registry }

// Describe sends every description.
func (c backendCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range backendCounts {
		ch <- m.desc
	}
	ch <- backendResponses
	ch <- backendLatency
	ch <- backendsDesc
}

// Collect reads every backend's counters once.
func (c backendCollector) Collect(ch chan<- prometheus.Metric) {
	bs := c.reg.Backends()
	ch <- prometheus.MustNewConstMetric(backendsDesc, prometheus.GaugeValue, float64(len(bs)))
	for _, b := range bs {
		snap := b.Stats.Snapshot()
		for _, m := range backendCounts {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(m.get(snap)), b.Service, b.Group, b.ID)
		}
		for _, c := range responseClasses {
			ch <- prometheus.MustNewConstMetric(backendResponses, prometheus.CounterValue, float64(c.get(snap)), b.Service, b.Group, b.ID, c.code)
		}
		buckets := make(map[float64]uint64, len(routing.Buckets))
		var cum uint64
		for i, le := range routing.Buckets {
			cum += snap.Latency[i]
			buckets[le.Seconds()] = cum
		}
		cum += snap.Latency[len(routing.Buckets)]
		ch <- prometheus.MustNewConstHistogram(backendLatency, cum, float64(snap.LatencySum)/1e9, buckets, b.Service, b.Group, b.ID)
	}
}

// routedGroups lists every service's groups in the routes (with weight or
// not: a canary's share comes and goes).
func (s *Service) routedGroups(context.Context) (map[string][]string, error) {
	return s.follower.Groups(), nil
}

// publishSample publishes a sample from another source (the CloudWatch
// bridge) on the METRICS stream, as "<router>/<source>" so that judges know
// which router vouches for it.
func (s *Service) publishSample(ctx context.Context, smp metrics.Sample) error {
	smp.Router = s.cfg.ID + "/" + smp.Router
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := s.js.Publish(pctx, subjects.Sample(smp.Service, smp.Group, subjects.PublisherRouter, smp.Router), smp.Encode(),
		jetstream.WithMsgID(fmt.Sprintf("%s:%s:%d", smp.Router, smp.Group, smp.End.UnixNano())))
	return err
}

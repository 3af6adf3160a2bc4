package phase

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/prom"
)

// Metrics are the canary judge's Prometheus metrics.
type Metrics struct {
	score    *prometheus.GaugeVec
	verdicts *prometheus.CounterVec
	looks    *prometheus.HistogramVec
}

// NewMetrics returns the judge's metrics, unregistered.
func NewMetrics() *Metrics {
	return &Metrics{
		score: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: prom.Namespace, Name: "canary_score",
			Help: "The canary judge's last score of the service (0..100)."}, []string{"service"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: prom.Namespace, Name: "canary_verdicts_total",
			Help: "Canaries judged, by verdict (passed, failed, calibrated)."}, []string{"service", "verdict"}),
		looks: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: prom.Namespace, Name: "canary_looks",
			Help: "Looks the sequential judge took before its verdict.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}, []string{"service"}),
	}
}

// Collectors lists the metrics for registration.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.score, m.verdicts, m.looks}
}

// observe records one verdict.
func (m *Metrics) observe(kind events.Kind, r events.CanaryResult, service string) {
	if m == nil {
		return
	}
	verdict := "failed"
	switch kind {
	case events.CanaryPassed:
		verdict = "passed"
	case events.Calibrated:
		verdict = "calibrated"
	}
	m.score.WithLabelValues(service).Set(r.Score)
	m.verdicts.WithLabelValues(service, verdict).Inc()
	m.looks.WithLabelValues(service).Observe(float64(r.Looks))
}

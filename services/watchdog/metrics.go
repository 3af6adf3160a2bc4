package watchdog

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redblack/redblack/shared/prom"
	"github.com/redblack/redblack/shared/release"
)

// promMetrics are the watchdog's Prometheus metrics, in the style of Argo
// Rollouts' controller metrics: the watchdog follows every release record,
// so it counts the outcomes and times the phases of all of them.
type promMetrics struct {
	phaseSeconds *prometheus.HistogramVec
	releases     *prometheus.CounterVec
	detect       *prometheus.HistogramVec
	inflight     prometheus.GaugeFunc

	mu   sync.Mutex
	seen map[string]int // release id → transitions already timed
}

// maxSeen bounds the transitions ledger; past it, it starts afresh (a
// record updated after that may have a phase timed twice).
const maxSeen = 10000

func newPromMetrics(inflight func() float64) *promMetrics {
	return &promMetrics{
		phaseSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: prom.Namespace, Name: "release_phase_seconds",
			Help: "Time releases spent in each phase, observed when they leave it.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 16)}, []string{"phase"}),
		releases: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: prom.Namespace, Name: "releases_total",
			Help: "Releases that reached a final phase, by outcome (completed, rolled_back, aborted, failed…)."}, []string{"outcome"}),
		detect: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: prom.Namespace, Name: "rollback_detect_seconds",
			Help:    "From the new group's first failed request after the switch to the watchdog's rollback request.",
			Buckets: prometheus.ExponentialBuckets(0.025, 2, 12)}, []string{"service"}),
		inflight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: prom.Namespace, Name: "releases_in_flight",
			Help: "Releases not yet in a final phase."}, inflight),
		seen: map[string]int{},
	}
}

// record times the phases a record has left since it was last seen and
// counts its outcome when it is final. replay marks the records of the
// watch's initial values: known, not timed again.
func (m *promMetrics) record(r release.Record, replay bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	done := len(r.History) - 1 // transitions with an end
	if done < 0 {
		return
	}
	from, known := m.seen[r.ID]
	if replay || from > done {
		m.seen[r.ID] = done
		return
	}
	if !known {
		from = 0
	}
	for i := from; i < done; i++ {
		m.phaseSeconds.WithLabelValues(string(r.History[i].Phase)).Observe(r.History[i+1].At.Sub(r.History[i].At).Seconds())
	}
	if r.Phase.Final() && (from < done || !known) {
		m.releases.WithLabelValues(string(r.Phase)).Inc()
	}
	if len(m.seen) >= maxSeen {
		m.seen = map[string]int{}
	}
	m.seen[r.ID] = done
}

// rollback observes the detection time of a rollback the watchdog asks for
// (none when no failed request was seen: a latency breach).
func (m *promMetrics) rollback(service string, firstError time.Time) {
	if !firstError.IsZero() {
		m.detect.WithLabelValues(service).Observe(time.Since(firstError).Seconds())
	}
}

func (m *promMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.phaseSeconds, m.releases, m.detect, m.inflight}
}

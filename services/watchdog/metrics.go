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
	reverted     prometheus.Counter
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
			Help: "Releases by the first final phase they reached (completed, rolled_back, rejected, aborted): each release is counted once."}, []string{"outcome"}),
		reverted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: prom.Namespace, Name: "releases_reverted_total",
			Help: "Completed releases rolled back later (redblack rollback): counted here, not again in releases_total."}),
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
	// transitions new to this watch: a watch can skip updates, so each
	// release's outcome is found in its history, not in its phase now
	newFrom := from + 1
	if !known {
		newFrom = 0
	}
	if first := firstFinal(r.History); first >= 0 {
		for i := newFrom; i <= done; i++ {
			switch {
			case i == first:
				// a release's outcome is its first final phase
				m.releases.WithLabelValues(string(r.History[i].Phase)).Inc()
			case i > first && r.History[first].Phase == release.PhaseCompleted && r.History[i].Phase == release.PhaseRolledBack:
				// a completed release rolled back later: a revert, not
				// a second outcome
				m.reverted.Inc()
			}
		}
	}
	if len(m.seen) >= maxSeen {
		m.seen = map[string]int{}
	}
	m.seen[r.ID] = done
}

// firstFinal is the index of the first final phase in a history.
func firstFinal(h []release.Transition) int {
	for i, t := range h {
		if t.Phase.Final() {
			return i
		}
	}
	return -1
}

// rollback observes the detection time of a rollback the watchdog asks for
// (none when no failed request was seen: a latency breach).
func (m *promMetrics) rollback(service string, firstError time.Time) {
	if !firstError.IsZero() {
		m.detect.WithLabelValues(service).Observe(time.Since(firstError).Seconds())
	}
}

func (m *promMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.phaseSeconds, m.releases, m.reverted, m.detect, m.inflight}
}

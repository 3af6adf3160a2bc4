package watchdog

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/redblack/redblack/shared/release"
)

// TestReleaseCountedOncePerOutcome: a release that completes and is rolled
// back later is one completed release and one revert, not also a rolled
// back release; and a watch that skipped the completed update counts the
// same.
func TestReleaseCountedOncePerOutcome(t *testing.T) {
	at := time.Now()
	history := func(phases ...release.Phase) []release.Transition {
		var h []release.Transition
		for i, p := range phases {
			h = append(h, release.Transition{Phase: p, At: at.Add(time.Duration(i) * time.Second)})
		}
		return h
	}
	lived := []release.Phase{release.PhaseAccepted, release.PhaseCanary, release.PhaseLaunching, release.PhaseSwitching,
		release.PhaseBaking, release.PhaseCompleted, release.PhaseRollingBack, release.PhaseRolledBack}
	for _, c := range []struct {
		name string
		seen []int // the history lengths the watch sees
	}{
		{"every update seen", []int{1, 2, 3, 4, 5, 6, 7, 8}},
		{"the completed update skipped", []int{1, 5, 8}},
		{"only the end seen", []int{8}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := newPromMetrics(func() float64 { return 0 })
			for _, n := range c.seen {
				m.record(release.Record{ID: "hello-1", Phase: lived[n-1], History: history(lived[:n]...)}, false)
			}
			// a second release that fails its canary: one rolled_back
			failed := []release.Phase{release.PhaseAccepted, release.PhaseCanary, release.PhaseRolledBack}
			m.record(release.Record{ID: "hello-2", Phase: release.PhaseRolledBack, History: history(failed...)}, false)
			for outcome, want := range map[string]float64{"completed": 1, "rolled_back": 1} {
				if got := testutil.ToFloat64(m.releases.WithLabelValues(outcome)); got != want {
					t.Errorf("releases_total{outcome=%q} = %v, want %v", outcome, got, want)
				}
			}
			if got := testutil.ToFloat64(m.reverted); got != 1 {
				t.Errorf("releases_reverted_total = %v, want 1", got)
			}
		})
	}
}

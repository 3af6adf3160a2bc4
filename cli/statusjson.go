package cli

import (
	"time"

	"github.com/redblack/redblack/shared/release"
)

// StatusSchema names the schema of status --json; a change that renames
// or removes a field is a new version (fields may be added within one).
const StatusSchema = "redblack.status/v1"

// statusDoc is status --json: every service's state, in snake_case, with
// no internal evidence (the judge's and the bake's checkpoints are in
// --debug's raw records).
type statusDoc struct {
	Schema   string          `json:"schema"`
	Services []serviceStatus `json:"services"`
}

// serviceStatus is one service in status --json.
type serviceStatus struct {
	Service string `json:"service"`
	// Active is the group with the traffic ("" before the first release).
	Active string `json:"active"`
	// InFlight is the release in progress ("" when none).
	InFlight    string         `json:"in_flight"`
	LastRelease *releaseStatus `json:"last_release"`
}

// releaseStatus is one release in status --json.
type releaseStatus struct {
	ID          string `json:"id"`
	Version     string `json:"version"`
	Group       string `json:"group"`
	Previous    string `json:"previous"`
	Phase       string `json:"phase"`
	Final       bool   `json:"final"`
	Reason      string `json:"reason"`
	RequestedBy string `json:"requested_by"`
	Strategy    string `json:"strategy"`
	// Canary and Baseline are the canary phase's groups, Restored the
	// group a rollback gave the traffic back to ("" when none).
	Canary   string `json:"canary"`
	Baseline string `json:"baseline"`
	Restored string `json:"restored"`
	// StartedAt is its acceptance, UpdatedAt its last phase change;
	// Seconds the time between them.
	StartedAt time.Time      `json:"started_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	Seconds   float64        `json:"seconds"`
	Phases    []phaseStatus  `json:"phases"`
	Judge     *judgeStatus   `json:"judge"`
	Rolling   *rollingStatus `json:"rolling,omitempty"`
}

// phaseStatus is one phase a release went through; Seconds is 0 for the
// phase it is in.
type phaseStatus struct {
	Phase   string    `json:"phase"`
	At      time.Time `json:"at"`
	Seconds float64   `json:"seconds"`
}

// judgeStatus is the canary judge's last look.
type judgeStatus struct {
	Verdict    string         `json:"verdict"`
	Score      float64        `json:"score"`
	Looks      int            `json:"looks"`
	Confidence float64        `json:"confidence"`
	Metrics    []metricStatus `json:"metrics"`
}

// metricStatus is one metric's comparison: each group's figure (the error
// rate, or the latency quantile in ms), its samples, and the interval of
// the difference.
type metricStatus struct {
	Name            string  `json:"name"`
	Classification  string  `json:"classification"`
	Critical        bool    `json:"critical"`
	Baseline        float64 `json:"baseline"`
	Canary          float64 `json:"canary"`
	BaselineSamples int     `json:"baseline_samples"`
	CanarySamples   int     `json:"canary_samples"`
	Low             float64 `json:"low"`
	High            float64 `json:"high"`
}

// rollingStatus is a rolling release's progress, in batches.
type rollingStatus struct {
	Batches  int `json:"batches"`
	Healthy  int `json:"healthy"`
	Verified int `json:"verified"`
	Back     int `json:"back"`
}

// statusOf is a service's state in the schema.
func statusOf(s serviceState) serviceStatus {
	out := serviceStatus{Service: s.Service, Active: s.Active, InFlight: s.InFlight}
	if s.Last != nil {
		r := releaseStatusOf(*s.Last)
		out.LastRelease = &r
	}
	return out
}

func releaseStatusOf(r release.Record) releaseStatus {
	out := releaseStatus{ID: r.ID, Version: r.Version, Group: r.Group, Previous: r.Previous, Phase: string(r.Phase), Final: r.Phase.Final(),
		Reason: r.Reason, RequestedBy: r.RequestedBy, Strategy: r.Strategy, Canary: r.Canary, Baseline: r.Baseline, Restored: r.Restored,
		Phases: []phaseStatus{}}
	for i, h := range r.History {
		p := phaseStatus{Phase: string(h.Phase), At: h.At}
		if i+1 < len(r.History) {
			p.Seconds = r.History[i+1].At.Sub(h.At).Seconds()
		}
		out.Phases = append(out.Phases, p)
	}
	if n := len(r.History); n > 0 {
		out.StartedAt, out.UpdatedAt = r.History[0].At, r.History[n-1].At
		out.Seconds = out.UpdatedAt.Sub(out.StartedAt).Seconds()
	}
	if rep := r.Report; rep != nil {
		j := &judgeStatus{Verdict: r.Verdict, Score: rep.Score, Looks: rep.Looks, Confidence: rep.Confidence, Metrics: []metricStatus{}}
		for _, m := range rep.Metrics {
			j.Metrics = append(j.Metrics, metricStatus{Name: m.Name, Classification: m.Classification, Critical: m.Critical,
				Baseline: m.BaselineMedian, Canary: m.CanaryMedian, BaselineSamples: m.BaselineSamples, CanarySamples: m.CanarySamples,
				Low: m.Low, High: m.High})
		}
		out.Judge = j
	}
	if ro := r.Rolling; ro != nil {
		out.Rolling = &rollingStatus{Batches: len(ro.Batches), Healthy: ro.Healthy, Verified: ro.Verified, Back: ro.Back}
	}
	return out
}

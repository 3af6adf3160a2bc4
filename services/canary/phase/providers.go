package phase

import (
	"context"
	"strings"
	"time"

	"github.com/redblack/redblack/shared/analysis"
)

// The metrics of a service's analysis templates (analysis.Judge), judged
// beside the router's on the same budget: each counts as a critical
// metric, two shares of 1 − confidence (split between the directions for
// "either").

// Analyze adds the templates' metrics to the judge; interval is how often
// they are read, canary the canary group's vars (the report gives the
// queries as they read the canary).
func (j *Judge) Analyze(templates []analysis.Template, interval time.Duration, canary analysis.Vars) {
	j.provided.Add(templates)
	j.provided.Every, j.provided.Canary, j.provided.MinSamples = interval, canary, j.cfg.MinSamples
	if n := float64(j.provided.Len()); n > 0 { // the router's metrics give up the template metrics' shares
		shares := j.routerShares()
		j.cfg.Alpha = (1 - j.cs.Confidence) * shares / (shares + 2*n)
		j.provided.Alpha = (1 - j.cs.Confidence) * 2 / (shares + 2*n)
	}
}

// routerShares counts the router metrics' shares of the budget: two for a
// critical metric, one for any other (judge.SeqConfig's split).
func (j *Judge) routerShares() float64 {
	var shares float64
	for _, m := range j.cfg.Metrics {
		shares++
		if m.Critical {
			shares++
		}
	}
	return shares
}

// Provided reports whether the judge reads template metrics.
func (j *Judge) Provided() bool { return j.provided.Len() > 0 }

// reader reads one expression of a metric for a group.
type reader interface {
	Read(ctx context.Context, m analysis.Metric, expr string, v analysis.Vars) (float64, error)
}

// ReadProviders reads every template metric for both groups (outside the
// judge's lock: it takes the network's time); Observe applies them.
func (j *Judge) ReadProviders(ctx context.Context, r reader, base, can analysis.Vars) analysis.Readings {
	return j.provided.Read(ctx, r, base, can)
}

// Observe applies one look's readings to the evidence.
func (j *Judge) Observe(rs analysis.Readings) {
	j.Checkpoint.Providers = j.provided.Observe(j.Checkpoint.Providers, rs)
}

// joinNonEmpty joins the non-empty parts with "; ".
func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}

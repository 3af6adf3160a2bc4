package bench

import (
	"time"

	"github.com/redblack/redblack/shared/spec"
)

// SpecBuilder builds the service specs of the benches, the demos and the
// end-to-end tests: short phases so that a release takes seconds, and
// what it does not set left to the spec's defaults (spec.Service.Default,
// when the spec is applied).
type SpecBuilder struct{ s spec.Service }

// NewSpec starts a spec of service name, owned by owner, whose instances
// run command: 2 instances, health checked on /healthz every 200 ms
// (healthy after one check, unhealthy after two), a canary of one instance
// a group and weight 20 for 2 s judged every 500 ms on at least 50 requests
// a group, and a 2 s bake.
func NewSpec(name, owner string, command ...string) *SpecBuilder {
	return &SpecBuilder{s: spec.Service{Name: name, Owner: owner, Capacity: 2,
		Health:   spec.Health{Path: "/healthz", Interval: spec.Duration(200 * time.Millisecond), HealthyThreshold: 1, UnhealthyThreshold: 2},
		Artifact: spec.Artifact{Command: command},
		Strategy: spec.Strategy{
			Canary: spec.Canary{Capacity: 1, Weight: 20, Duration: spec.Duration(2 * time.Second), Interval: spec.Duration(500 * time.Millisecond), MinSamples: 50},
			Bake:   spec.Bake{Duration: spec.Duration(2 * time.Second)},
		},
	}}
}

// Capacity sets the number of instances (a rolling service's slots).
func (b *SpecBuilder) Capacity(n int) *SpecBuilder { b.s.Capacity = n; return b }

// CanaryCapacity sets the instances of each of the baseline and the canary.
func (b *SpecBuilder) CanaryCapacity(n int) *SpecBuilder { b.s.Strategy.Canary.Capacity = n; return b }

// HealthEvery sets the health check's interval.
func (b *SpecBuilder) HealthEvery(d time.Duration) *SpecBuilder {
	b.s.Health.Interval = spec.Duration(d)
	return b
}

// Canary sets the canary's duration and the interval of its looks.
func (b *SpecBuilder) Canary(d, interval time.Duration) *SpecBuilder {
	b.s.Strategy.Canary.Duration, b.s.Strategy.Canary.Interval = spec.Duration(d), spec.Duration(interval)
	return b
}

// Weight sets the canary's and the baseline's share of traffic, in percent
// (0: the spec's default).
func (b *SpecBuilder) Weight(w int) *SpecBuilder { b.s.Strategy.Canary.Weight = w; return b }

// MinSamples sets the requests per group and metric the judge needs.
func (b *SpecBuilder) MinSamples(n int) *SpecBuilder { b.s.Strategy.Canary.MinSamples = n; return b }

// Bake sets the bake's duration.
func (b *SpecBuilder) Bake(d time.Duration) *SpecBuilder {
	b.s.Strategy.Bake.Duration = spec.Duration(d)
	return b
}

// LatencySlack judges the canary on the default metrics, its latency ones
// passing any shift under d: on a machine that runs the load beside the
// instances, one process of two can be starved for a moment.
func (b *SpecBuilder) LatencySlack(d time.Duration) *SpecBuilder {
	metrics := spec.DefaultMetrics()
	for i := range metrics {
		if metrics[i].Name != spec.MetricErrorRate {
			metrics[i].MinShift = spec.Duration(d)
		}
	}
	b.s.Strategy.Canary.Metrics = metrics
	return b
}

// Rolling releases the service by rolling, one slot at a time, with the
// health gate and the verify given.
func (b *SpecBuilder) Rolling(gate, verify time.Duration) *SpecBuilder {
	b.s.Strategy.Type = spec.StrategyRolling
	b.s.Strategy.Rolling = spec.Rolling{MaxUnavailable: "1", HealthGate: spec.Duration(gate), Verify: spec.Verify{Duration: spec.Duration(verify)}}
	return b
}

// Chaos opts the service into Chaos Monkey in its fast mode: a kill every
// mean on average, never two within minGap.
func (b *SpecBuilder) Chaos(mean, minGap time.Duration) *SpecBuilder {
	b.s.Chaos = spec.Chaos{Enabled: true, MeanTimeBetweenKills: spec.KillInterval{Every: mean}, MinTimeBetweenKills: spec.KillInterval{Every: minGap}}
	return b
}

// RollbackDeadline sets the deadline of a rollback.
func (b *SpecBuilder) RollbackDeadline(d time.Duration) *SpecBuilder {
	b.s.Strategy.Deadlines.Rollback = spec.Duration(d)
	return b
}

// MaxCapacity sets the most instances the service may scale to.
func (b *SpecBuilder) MaxCapacity(n int) *SpecBuilder { b.s.MaxCapacity = n; return b }

// Build is the spec.
func (b *SpecBuilder) Build() spec.Service { return b.s }

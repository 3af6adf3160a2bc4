package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const full = `
name: hello
owner: team-hello
capacity: 3
strategy:
  canary:
    capacity: 1
    weight: 20
    duration: 30s
    interval: 5s
    min_samples: 100
    metrics:
      - {name: error_rate, critical: true, tolerance: 0.002}
      - {name: latency_p99, direction: increase, tolerance: 0.2, weight: 2}
  bake: {duration: 20s, max_error_rate: 0.05}
  keep_previous: 2
  deadlines: {launch: 1m}
chaos:
  enabled: true
  mean_time_between_kills: 2s
  min_time_between_kills: 0.5
  grouping: group
  exceptions: ["hello-v00*"]
`

func TestStrategyAndChaosParse(t *testing.T) {
	s, err := Parse(strings.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	c := s.Strategy.Canary
	if c.Weight != 20 || c.Duration.D() != 30*time.Second || c.PassScore != 95 || c.MarginalScore != 75 || len(c.Metrics) != 2 ||
		c.Metrics[0].Direction != "increase" || c.Metrics[1].Weight != 2 {
		t.Fatalf("canary %+v", c)
	}
	if s.Strategy.Bake.MaxLatencyRatio != 1.25 || s.Strategy.Bake.ErrorTolerance != 0.002 || s.Strategy.Bake.Confidence != 0.99 || s.Strategy.Bake.Reference() != DefaultReferenceWeight ||
		c.Confidence != 0.99 || c.EarlyPass || s.Strategy.KeepPrevious != 2 || s.Strategy.Deadlines.Launch.D() != time.Minute ||
		s.Strategy.Deadlines.Canary.D() != 30*time.Second+10*time.Minute {
		t.Fatalf("strategy %+v", s.Strategy)
	}
	if !s.Chaos.Enabled || s.Chaos.MeanTimeBetweenKills.Every != 2*time.Second || s.Chaos.MinTimeBetweenKills.WorkDays != 0.5 {
		t.Fatalf("chaos %+v", s.Chaos)
	}
	b, _ := s.Encode()
	back, err := Decode(b)
	if err != nil || !reflect.DeepEqual(back, s) {
		t.Fatalf("JSON round trip: %v\n%+v\n%+v", err, back, s)
	}
	y, _ := yaml.Marshal(s)
	again, err := Parse(strings.NewReader(string(y)))
	if err != nil || !reflect.DeepEqual(again, s) {
		t.Fatalf("YAML round trip: %v\n%s", err, y)
	}
}

func TestDefaultsForAMinimalSpec(t *testing.T) {
	s, err := Parse(strings.NewReader("name: hello\nowner: x\ncapacity: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Strategy.Canary.Capacity != DefaultCanaryCapacity || len(s.Strategy.Canary.Metrics) != 3 || !s.Strategy.Canary.Metrics[0].Critical ||
		s.Strategy.KeepPrevious != 1 || s.Chaos.Enabled || s.Chaos.MeanTimeBetweenKills.WorkDays != 2 {
		t.Fatalf("defaults %+v %+v", s.Strategy, s.Chaos)
	}
	// the canary's default is never past max_capacity
	s, err = Parse(strings.NewReader("name: hello\nowner: x\ncapacity: 2\nmax_capacity: 3\n"))
	if err != nil || s.Strategy.Canary.Capacity != 3 {
		t.Fatalf("max_capacity 3: canary capacity %d, %v", s.Strategy.Canary.Capacity, err)
	}
}

func TestStrategyRejectsEachBadField(t *testing.T) {
	base := "name: hello\nowner: x\ncapacity: 2\n"
	cases := map[string]string{
		"strategy:\n  canary: {weight: 60}\n":                                                         "strategy.canary.weight",
		"strategy:\n  canary: {capacity: 50}\n":                                                       "strategy.canary.capacity",
		"strategy:\n  canary: {duration: 10s, interval: 20s}\n":                                       "strategy.canary.interval",
		"strategy:\n  canary: {pass_score: 101}\n":                                                    "strategy.canary.pass_score",
		"strategy:\n  canary: {marginal_score: 96}\n":                                                 "strategy.canary.marginal_score",
		"strategy:\n  canary: {min_samples: 3}\n":                                                     "strategy.canary.min_samples",
		"strategy:\n  canary: {metrics: [{name: cpu}]}\n":                                             "strategy.canary.metrics[0].name",
		"strategy:\n  canary: {metrics: [{name: error_rate, direction: up}]}\n":                       "strategy.canary.metrics[0].direction",
		"strategy:\n  canary: {metrics: [{name: error_rate}, {name: error_rate}]}\n":                  "strategy.canary.metrics[1].name",
		"strategy:\n  bake: {max_error_rate: 2}\n":                                                    "strategy.bake.max_error_rate",
		"strategy:\n  bake: {max_latency_ratio: 0.5}\n":                                               "strategy.bake.max_latency_ratio",
		"strategy:\n  bake: {confidence: 1}\n":                                                        "strategy.bake.confidence",
		"strategy:\n  bake: {error_tolerance: -0.1}\n":                                                "strategy.bake.error_tolerance",
		"strategy:\n  bake: {reference_weight: 60}\n":                                                 "strategy.bake.reference_weight",
		"strategy:\n  bake: {reference_weight: -1}\n":                                                 "strategy.bake.reference_weight",
		"strategy:\n  bake: {max_latency: -1s}\n":                                                     "strategy.bake.max_latency",
		"strategy:\n  analysis: [Orders]\n":                                                           "strategy.analysis[0]",
		"strategy:\n  analysis: [orders, orders]\n":                                                   "strategy.analysis[1]",
		"strategy:\n  analysis: [a, b, c, d, e]\n":                                                    "strategy.analysis",
		"strategy:\n  canary: {confidence: 0.3}\n":                                                    "strategy.canary.confidence",
		"strategy:\n  keep_previous: 11\n":                                                            "strategy.keep_previous",
		"strategy:\n  bake: {duration: 10m}\n  deadlines: {bake: 1m}\n":                               "strategy.deadlines.bake",
		"chaos: {grouping: cluster}\n":                                                                "chaos.grouping",
		"chaos: {exceptions: [\"[\"]}\n":                                                              "chaos.exceptions[0]",
		"chaos: {mean_time_between_kills: 10ms}\n":                                                    "chaos.mean_time_between_kills",
		"strategy:\n  type: blue_green\n":                                                             "strategy.type",
		"strategy:\n  type: rolling\n  rolling: {max_unavailable: 0}\n":                               "strategy.rolling.max_unavailable",
		"strategy:\n  type: rolling\n  rolling: {max_unavailable: 120%}\n":                            "strategy.rolling.max_unavailable",
		"strategy:\n  type: rolling\n  rolling: {health_gate: -1s}\n":                                 "strategy.rolling.health_gate",
		"strategy:\n  type: rolling\n  rolling: {batch_pause: 2h}\n":                                  "strategy.rolling.batch_pause",
		"strategy:\n  type: rolling\n  rolling: {verify: {duration: 10ms}}\n":                         "strategy.rolling.verify.duration",
		"strategy:\n  type: rolling\n  deadlines: {batch: 5s}\n":                                      "strategy.deadlines.batch",
		"strategy:\n  type: rolling\nautoscale: {min: 1, max: 4, target_requests_per_instance: 10}\n": "autoscale",
	}
	for extra, field := range cases {
		_, err := Parse(strings.NewReader(base + extra))
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%q: err = %v, want a ValidationError on %s", extra, err, field)
			continue
		}
		found := false
		for _, f := range ve.Fields {
			found = found || f.Field == field
		}
		if !found {
			t.Errorf("%q: fields %v, want %s", extra, ve.Fields, field)
		}
	}
	if _, err := Parse(strings.NewReader(base + "chaos: {mean_time_between_kills: soon}\n")); err == nil {
		t.Error("a kill interval of \"soon\" was accepted")
	}
}

// TestRollingParse: a rolling spec's fields and defaults, a count or a
// percentage for max_unavailable, and a round trip.
func TestRollingParse(t *testing.T) {
	s, err := Parse(strings.NewReader(`
name: store
owner: data
capacity: 4
strategy:
  type: rolling
  rolling: {max_unavailable: 2, batch_pause: 1s, health_gate: 3s, verify: {duration: 20s}}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Strategy.Rolling
	if s.Strategy.Type != StrategyRolling || r.MaxUnavailable != "2" || r.BatchPause.D() != time.Second || r.HealthGate.D() != 3*time.Second ||
		r.Verify.Duration.D() != 20*time.Second || s.Strategy.Deadlines.Batch.D() != 23*time.Second+5*time.Minute {
		t.Fatalf("rolling %+v, deadlines %+v", r, s.Strategy.Deadlines)
	}
	p, err := Parse(strings.NewReader("name: store\nowner: data\ncapacity: 4\nstrategy:\n  type: rolling\n  rolling: {max_unavailable: 50%}\n"))
	if err != nil || p.Strategy.Rolling.MaxUnavailable != "50%" || p.Strategy.Rolling.HealthGate.D() != 10*time.Second || p.Strategy.Rolling.Verify.Duration.D() != time.Minute {
		t.Fatalf("percentage and defaults: %v %+v", err, p.Strategy.Rolling)
	}
	y, _ := yaml.Marshal(s)
	again, err := Parse(strings.NewReader(string(y)))
	if err != nil || !reflect.DeepEqual(again, s) {
		t.Fatalf("YAML round trip: %v\n%s", err, y)
	}
	d, err := Parse(strings.NewReader("name: hello\nowner: x\ncapacity: 2\n"))
	if err != nil || d.Strategy.Type != StrategyRedBlack {
		t.Fatalf("default type: %v %q", err, d.Strategy.Type)
	}
}

// TestReferenceWeight: unset is the default slice; an explicit 0 stays 0
// (the bake on its absolute rules alone), through JSON too.
func TestReferenceWeight(t *testing.T) {
	for yaml, want := range map[string]int{"": DefaultReferenceWeight, "strategy:\n  bake: {reference_weight: 0}\n": 0, "strategy:\n  bake: {reference_weight: 25}\n": 25} {
		s, err := Parse(strings.NewReader("name: hello\nowner: x\ncapacity: 2\n" + yaml))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := s.Encode()
		back, err := Decode(b)
		if err != nil || s.Strategy.Bake.Reference() != want || back.Strategy.Bake.Reference() != want {
			t.Errorf("%q: %d, %d after JSON (%v), want %d", yaml, s.Strategy.Bake.Reference(), back.Strategy.Bake.Reference(), err, want)
		}
	}
}

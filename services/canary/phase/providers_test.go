package phase

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/metrics"
)

// counters is a reader of simulated counters: every look each group
// serves perLook requests, of which each places an order with probability
// ordered; value readings are each group's own value; down makes every
// reading fail.
type counters struct {
	r                *rand.Rand
	requests, orders map[string]float64
	ordered, value   map[string]float64
	perLook          int
	down             bool
}

func newCounters(baseOrdered, canOrdered float64) *counters {
	return &counters{r: rand.New(rand.NewPCG(3, 4)), requests: map[string]float64{}, orders: map[string]float64{},
		ordered: map[string]float64{"b": baseOrdered, "c": canOrdered}, value: map[string]float64{"b": 100, "c": 100}, perLook: 600}
}

// serve advances every group by one look of traffic.
func (c *counters) serve() {
	for g, p := range c.ordered {
		for range c.perLook {
			c.requests[g]++
			if c.r.Float64() < p {
				c.orders[g]++
			}
		}
	}
}

func (c *counters) Read(_ context.Context, m analysis.Metric, expr string, v analysis.Vars) (float64, error) {
	if c.down {
		return 0, errors.New("connection refused")
	}
	switch expr {
	case "orders":
		return c.orders[v.Group], nil
	case "requests":
		return c.requests[v.Group], nil
	case "p99":
		return c.value[v.Group] * (1 + 0.05*c.r.NormFloat64()), nil
	}
	return 0, analysis.ErrNoData
}

var ordersTemplate = analysis.Template{Name: "orders", Owner: "o", Metrics: []analysis.Metric{
	{Name: "orders_per_request", Provider: analysis.ProviderPrometheus, Kind: analysis.KindRatio, Events: "orders", Total: "requests", Direction: "decrease", Tolerance: 0.05},
}}

var p99Template = analysis.Template{Name: "latency", Owner: "o", Metrics: []analysis.Metric{
	{Name: "app_p99", Provider: analysis.ProviderWeb, Kind: analysis.KindValue, Query: "p99", Direction: "increase", Tolerance: 0.2},
}}

// runLooks runs n looks of healthy router samples with the templates read
// at each; it returns the outcome, the look and the last result.
func runLooks(j *Judge, c *counters, n, grace int, each func(i int)) (Outcome, int, string) {
	g := metrics.Synthetic{ErrorRate: 0.005, MedianMs: 20, Sigma: 0.5}.Generator()
	r := rand.New(rand.NewPCG(9, 9))
	vars := [2]analysis.Vars{{Group: "b"}, {Group: "c"}}
	for i := range n + grace {
		if each != nil {
			each(i)
		}
		c.serve()
		j.Add(g.Sample(r, 600, "x", "b", time.Time{}, time.Time{}), true)
		j.Add(g.Sample(r, 600, "x", "c", time.Time{}, time.Time{}), false)
		j.Observe(j.ReadProviders(context.Background(), c, vars[0], vars[1]))
		res, out := j.Look(i+1 >= n, i+1 >= n+grace)
		if out != Undecided {
			return out, i + 1, res.Reason
		}
	}
	return Undecided, n + grace, ""
}

func TestTemplateMetrics(t *testing.T) {
	cs := canarySpec() // 10 looks
	cases := []struct {
		name      string
		tm        analysis.Template
		base, can float64 // orders per request
		canValue  float64
		down      func(i int) bool
		want      Outcome
		reason    string
	}{
		{"orders as before", ordersTemplate, 1, 1, 100, nil, Passed, "reaches the pass score"},
		{"30% of orders dropped", ordersTemplate, 1, 0.7, 100, nil, Failed, "orders_per_request (template orders, prometheus: orders / requests) Low"},
		{"2% fewer orders: within the tolerance", ordersTemplate, 1, 0.98, 100, nil, Passed, ""},
		{"a p99 as before", p99Template, 1, 1, 100, nil, Passed, ""},
		{"a p99 twice as high", p99Template, 1, 1, 200, nil, Failed, "app_p99 (template latency, web: p99) High"},
		{"the provider down from the start", ordersTemplate, 1, 1, 100, func(int) bool { return true }, Failed, "inconclusive: orders_per_request (template orders, prometheus: orders / requests) is inconclusive: orders: connection refused"},
		{"the provider gone mid-canary", ordersTemplate, 1, 1, 100, func(i int) bool { return i >= 5 }, Failed, "inconclusive"},
		{"the provider back within the grace", ordersTemplate, 1, 1, 100, func(i int) bool { return i >= 5 && i < 11 }, Passed, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := NewJudge(cs)
			j.Analyze([]analysis.Template{c.tm}, cs.Interval.D(), analysis.Vars{Group: "c"})
			ctr := newCounters(c.base, c.can)
			ctr.value["c"] = c.canValue
			out, at, reason := runLooks(j, ctr, 10, 3, func(i int) { ctr.down = c.down != nil && c.down(i) })
			t.Logf("%v at look %d: %s", out, at, reason)
			if out != c.want || !strings.Contains(reason, c.reason) {
				t.Fatalf("%v at look %d (%s), want %v with %q", out, at, reason, c.want, c.reason)
			}
			// the report names the query and both groups' values
			res, _ := j.Look(true, true)
			last := res.Metrics[len(res.Metrics)-1]
			if last.Template != c.tm.Name || last.Query == "" || last.Interval != cs.Interval.D() || last.Readings == 0 && c.down == nil {
				t.Fatalf("report: %+v", last)
			}
		})
	}
}

// TestOptionalMetric: an optional metric that cannot be read does not fail
// the canary, and the reason says so.
func TestOptionalMetric(t *testing.T) {
	cs := canarySpec()
	tm := ordersTemplate
	tm.Metrics = append([]analysis.Metric(nil), tm.Metrics...)
	tm.Metrics[0].Optional = true
	j := NewJudge(cs)
	j.Analyze([]analysis.Template{tm}, cs.Interval.D(), analysis.Vars{Group: "c"})
	ctr := newCounters(1, 1)
	ctr.down = true
	out, _, reason := runLooks(j, ctr, 10, 3, nil)
	if out != Passed || !strings.Contains(reason, "is inconclusive") {
		t.Fatalf("%v: %s", out, reason)
	}
}

// TestTemplateBudget: the router's metrics give the templates' metrics
// their shares, and the shares add up to the whole budget.
func TestTemplateBudget(t *testing.T) {
	cs := canarySpec() // error_rate critical (2 shares), p50 and p99 (1 each)
	j := NewJudge(cs)
	j.Analyze([]analysis.Template{ordersTemplate, p99Template}, cs.Interval.D(), analysis.Vars{Group: "c"})
	alpha := 1 - cs.Confidence
	if got := j.cfg.Alpha + float64(j.provided.Len())*j.provided.Alpha; j.provided.Len() != 2 || got < alpha*0.999999 || got > alpha*1.000001 {
		t.Fatalf("shares add up to %g, want %g", got, alpha)
	}
	if want := alpha * 4 / 8; j.cfg.Alpha < want*0.999999 || j.cfg.Alpha > want*1.000001 {
		t.Fatalf("the router's metrics: %g, want %g", j.cfg.Alpha, want)
	}
}

// TestProviderCheckpoint: the templates' evidence goes through the record
// and back, and a checkpoint with impossible readings is refused.
func TestProviderCheckpoint(t *testing.T) {
	cs := canarySpec()
	j := NewJudge(cs)
	j.Analyze([]analysis.Template{ordersTemplate}, cs.Interval.D(), analysis.Vars{Group: "c"})
	runLooks(j, newCounters(1, 1), 3, 0, nil)
	b, _ := json.Marshal(j.Checkpoint)
	back, err := DecodeCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if ps := back.Providers["orders/orders_per_request"]; ps == nil || ps.Readings != 3 || len(ps.First) != 4 {
		t.Fatalf("round trip: %+v", back.Providers)
	}
	for _, bad := range []string{`{"providers":{"a":{"first":[1,2]}}}`, `{"providers":{"a":{"looks":1,"above":2}}}`, `{"providers":{"a":null}}`} {
		if _, err := DecodeCheckpoint([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// TestCounterReset: a ratio's counter that goes down (an instance of the
// group restarted) leaves the metric inconclusive, and the canary fails so
// at its end and grace, never judged on counts that lost a part.
func TestCounterReset(t *testing.T) {
	cs := canarySpec()
	j := NewJudge(cs)
	j.Analyze([]analysis.Template{ordersTemplate}, cs.Interval.D(), analysis.Vars{Group: "c"})
	ctr := newCounters(1, 1)
	out, _, reason := runLooks(j, ctr, 10, 3, func(i int) {
		if i == 5 {
			ctr.orders["c"], ctr.requests["c"] = 0, 0
		}
	})
	if out != Failed || !strings.Contains(reason, "a counter went down") {
		t.Fatalf("%v: %s", out, reason)
	}
}

// TestLongErrorKeepsTheCheckpoint: a reading's error longer than the
// checkpoint allows is clipped, so the checkpoint still reads back.
func TestLongErrorKeepsTheCheckpoint(t *testing.T) {
	cs := canarySpec()
	j := NewJudge(cs)
	j.Analyze([]analysis.Template{ordersTemplate}, cs.Interval.D(), analysis.Vars{Group: "c"})
	j.Observe(analysis.Readings{"orders/orders_per_request": {Err: errors.New(strings.Repeat("é", 2000))}})
	b, _ := json.Marshal(j.Checkpoint)
	back, err := DecodeCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if why := back.Providers["orders/orders_per_request"].Inconclusive; len(why) > analysis.MaxWhy || !strings.HasSuffix(why, "…") {
		t.Fatalf("%d bytes: %q", len(why), why[len(why)-10:])
	}
}

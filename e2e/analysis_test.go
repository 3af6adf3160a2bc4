package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// TestBusinessMetricThroughPrometheus: a real Prometheus (Debian's)
// scrapes hello's instances, found on redblack's admin port
// (/discovery/prometheus, labelled by group). hello's team applies an
// analysis template through the team API — orders per request, from
// hello_orders_total and hello_requests_total — and names it in its spec.
//   - v2 (healthy) passes its canary with the metric judged on Prometheus's
//     counts;
//   - v3 answers every request 200 but loses 30 % of its orders
//     (--drop-orders 0.3): the router's metrics cannot see it, and the
//     canary fails through Prometheus, the query in the reason;
//   - v4 (healthy) loses its Prometheus mid-canary: the metric is
//     inconclusive from then on, and the canary fails as inconclusive at
//     its end and grace, never a pass.
//
// Before the template exists, a spec naming it is refused at apply.
func TestBusinessMetricThroughPrometheus(t *testing.T) {
	cfg := testConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP, cfg.Admin = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(); testkit.KillAll(hello) })
	admin := m.AdminAddr().String()
	prom := testkit.StartPrometheus(t, fmt.Sprintf(`  - job_name: instances
    http_sd_configs: [{url: "http://%s%s", refresh_interval: 1s}]
  - job_name: redblack
    static_configs: [{targets: ["%s"]}]
`, admin, discovery.PrometheusSDPath, admin))

	svc := fastSpec()
	svc.Strategy.Canary.Duration = spec.Duration(8 * time.Second)
	p := &pipeline{t: t, m: m}
	p.attach(svc)
	team := p.teamUser("t", "alice", "hello")
	id := auth.Identity{Team: "t", User: "alice"}

	// a spec naming a template the team does not have is refused, naming the field
	with := svc
	with.Strategy.Analysis = []string{"orders"}
	var applied api.Applied
	if err := api.Call(team, id, api.VerbSpecApply, "hello", with, &applied); err == nil || !strings.Contains(err.Error(), "strategy.analysis[0]") {
		t.Fatalf("a spec naming a missing template: %v", err)
	}
	tm := analysis.Template{Name: "orders", Metrics: []analysis.Metric{{
		Name: "orders_per_request", Provider: analysis.ProviderPrometheus, Address: prom.URL, Kind: analysis.KindRatio,
		Events:    `sum(hello_orders_total{service="{{service}}",group="{{group}}"})`,
		Total:     `sum(hello_requests_total{service="{{service}}",group="{{group}}"})`,
		Direction: "decrease", Tolerance: 0.05,
	}}}
	if err := api.Call(team, id, subjects.VerbAnalysisApply, "orders", tm, &applied); err != nil || applied.Result != "created" {
		t.Fatalf("template apply: %+v %v", applied, err)
	}
	if err := api.Call(team, id, api.VerbSpecApply, "hello", with, &applied); err != nil {
		t.Fatalf("the spec naming the template: %v", err)
	}

	p.deployV1()
	canaryOf := func(version string, flags ...string) (release.Record, events.MetricReport) {
		t.Helper()
		id := p.release(version, flags...)
		p.await(id, 120*time.Second, events.CanaryPassed, events.CanaryFailed)
		r := p.record(id)
		if r.Report == nil {
			t.Fatalf("%s: no report", version)
		}
		for _, mr := range r.Report.Metrics {
			if mr.Name == "orders_per_request" {
				t.Logf("%s: %s; orders_per_request: baseline %.3f (%d requests), canary %.3f (%d), %d readings, %s %s",
					version, r.Report.Reason, mr.BaselineMedian, mr.BaselineSamples, mr.CanaryMedian, mr.CanarySamples, mr.Readings, mr.Classification, mr.Inconclusive)
				return r, mr
			}
		}
		t.Fatalf("%s: the report has no orders_per_request: %+v", version, r.Report.Metrics)
		return r, events.MetricReport{}
	}

	v2, mr := canaryOf("v2")
	if v2.Verdict != "passed" || mr.Classification != "Pass" || mr.Readings == 0 || mr.CanarySamples < 50 || mr.Query == "" {
		t.Fatalf("v2: %s, %+v", v2.Report.Reason, mr)
	}
	p.await(v2.ID, 60*time.Second, events.ReleaseCompleted)

	v3, mr := canaryOf("v3", "--drop-orders", "0.3")
	if v3.Verdict != "failed" || mr.Classification != "Low" || !strings.Contains(v3.Report.Reason, `sum(hello_orders_total{service="hello",group="hello-v003-canary"})`) {
		t.Fatalf("v3 (30%% of orders lost): %s, %+v", v3.Report.Reason, mr)
	}
	for _, rm := range v3.Report.Metrics {
		if rm.Name == spec.MetricErrorRate && rm.Classification != "Pass" {
			t.Fatalf("v3's errors are the router's business: %+v", rm)
		}
	}
	p.await(v3.ID, 60*time.Second, events.RolledBack)

	v4 := p.release("v4")
	p.await(v4, 60*time.Second, events.CanaryStarted)
	// the metric read once at least, then Prometheus goes away
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r := p.record(v4); r.Report != nil && len(r.Report.Metrics) > 3 && r.Report.Metrics[3].Readings > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("v4's orders metric never read: %+v", p.record(v4).Report)
		}
	}
	prom.Stop()
	stopped := time.Now()
	p.await(v4, 120*time.Second, events.CanaryPassed, events.CanaryFailed)
	r := p.record(v4)
	t.Logf("v4: %s after Prometheus went away: %s", time.Since(stopped).Round(time.Second), r.Report.Reason)
	if r.Verdict != "failed" || !strings.Contains(r.Report.Reason, "inconclusive: orders_per_request") || !strings.Contains(r.Report.Reason, "prometheus") {
		t.Fatalf("v4 without its Prometheus: %s: %s", r.Verdict, r.Report.Reason)
	}
}

// TestRollingVerifyJudgesTemplates: a stateless service released by
// rolling names an analysis template whose metric comes from a web
// endpoint (JSON, read with a JSONPath): each group's jobs failed of jobs
// run, which the router cannot see. The endpoint says v2's groups fail 30 %
// of their jobs and v1's 1 %: v2's first batch fails its verify through the
// template, its query in the reason, and the roll goes back.
func TestRollingVerifyJudgesTemplates(t *testing.T) {
	jobs, _ := jobsServer(t, func(g string) bool { return strings.Contains(g, "-v002") })
	svc := bench.NewSpec("hello", "t", hello).Capacity(2).LatencySlack(testkit.LatencySlack).Rolling(500*time.Millisecond, 4*time.Second).Build()
	svc.Strategy.Rolling.Stateless = true
	p := newPipeline(t, t.TempDir(), svc)
	p.useJobsTemplate(svc, jobs.URL)
	p.deployV1()

	v2 := p.release("v2")
	p.await(v2, 90*time.Second, events.RolledBack)
	rb := p.batches(v2, events.RollingRollback)
	if len(rb) == 0 || !strings.Contains(rb[0].Reason, "analysis: jobs_failed") || !strings.Contains(rb[0].Reason, "web: $.jobs.failed / $.jobs.run") {
		t.Fatalf("v2's rollback: %+v\n%s", rb, p.story(v2))
	}
	t.Logf("v2: %s", rb[0].Reason)
	if n := p.failures(); n > 0 {
		t.Errorf("%d requests failed: the template's failure is not the users'", n)
	}
}

// TestBakeJudgesTemplates: the bake judges the service's analysis
// templates too, the new group against the old group's slice over the
// same seconds. The web endpoint says the canary group of v2 is as good
// as v1 but v2's full group fails 30 % of its jobs (a fault that shows
// only at scale): the canary passes, and the bake rolls v2 back through
// the template, with its query in the reason.
func TestBakeJudgesTemplates(t *testing.T) {
	jobs, _ := jobsServer(t, func(g string) bool { return g == "hello-v002" })
	svc := fastSpec()
	svc.Strategy.Bake.Duration = spec.Duration(8 * time.Second)
	p := newPipeline(t, t.TempDir(), svc)
	p.useJobsTemplate(svc, jobs.URL)
	p.deployV1()

	v2 := p.release("v2")
	if ev := p.await(v2, 60*time.Second, events.CanaryPassed, events.CanaryFailed); ev.Type != events.CanaryPassed.Type() {
		t.Fatalf("v2's canary: %s", ev.Data)
	}
	p.await(v2, 60*time.Second, events.RolledBack)
	var rb events.Rollback
	_ = p.await(v2, time.Second, events.RollbackRequested).DecodeData(&rb)
	if rb.By != "watchdog" || !strings.Contains(rb.Reason, "bake: analysis: jobs_failed") || !strings.Contains(rb.Reason, "web: $.jobs.failed / $.jobs.run") {
		t.Fatalf("v2's rollback: %+v\n%s", rb, p.story(v2))
	}
	t.Logf("v2: %s", rb.Reason)
	if n := p.failures(); n > 0 {
		t.Errorf("%d requests failed", n)
	}
}

// TestProviderEgress: with the admin's allow-list (up --provider-egress),
// a template whose provider is outside it is never read: the metric is
// inconclusive with the allow-list in its reason, and the server sees no
// request.
func TestProviderEgress(t *testing.T) {
	jobs, hits := jobsServer(t, func(string) bool { return false })
	cfg := testConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP, cfg.Admin = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", ""
	var err error
	if cfg.ProviderEgress, err = analysis.ParseEgress("10.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(); testkit.KillAll(hello) })
	svc := fastSpec()
	svc.Strategy.Canary.Duration = spec.Duration(20 * time.Second)
	p := &pipeline{t: t, m: m}
	p.attach(svc)
	p.useJobsTemplate(svc, jobs.URL)
	p.deployV1()
	v2 := p.release("v2")
	p.await(v2, 60*time.Second, events.CanaryStarted)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r := p.record(v2); r.Report != nil {
			if mr := r.Report.Metrics[len(r.Report.Metrics)-1]; mr.Name == "jobs_failed" && strings.Contains(mr.Inconclusive, "not in the providers' egress allow-list (10.0.0.0/8)") {
				t.Logf("jobs_failed: %s", mr.Inconclusive)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the metric never said its provider is outside the allow-list: %+v", p.record(v2).Report)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d readings reached a provider outside the allow-list", n)
	}
}

// jobsServer is a team's web endpoint of jobs run and failed, by group
// (?group=): counts that grow with time, 1 % of them failed, or 30 % for
// the groups bad names. hits counts its answers.
func jobsServer(t *testing.T, bad func(group string) bool) (srv *httptest.Server, hits *atomic.Int32) {
	start, hits := time.Now(), new(atomic.Int32)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		total := 100 * time.Since(start).Milliseconds() // jobs run so far, growing
		failed := total / 100
		if bad(r.URL.Query().Get("group")) {
			failed = total * 3 / 10
		}
		fmt.Fprintf(w, `{"jobs": {"run": %d, "failed": %d}}`, total, failed)
	}))
	t.Cleanup(srv.Close)
	return srv, hits
}

// useJobsTemplate stores team t's template jobs (jobs failed of jobs run,
// from the web endpoint at url, at most 5 points more in a new version)
// and applies svc naming it.
func (p *pipeline) useJobsTemplate(svc spec.Service, url string) {
	p.t.Helper()
	ctx := context.Background()
	akv, err := p.js.KeyValue(ctx, topology.BucketAnalysis)
	if err != nil {
		p.t.Fatal(err)
	}
	tm := analysis.Template{Name: "jobs", Owner: "t", Metrics: []analysis.Metric{{
		Name: "jobs_failed", Provider: analysis.ProviderWeb, Address: url + "/?group={{group}}", Kind: analysis.KindRatio,
		Events: "$.jobs.failed", Total: "$.jobs.run", Direction: "increase", Tolerance: 0.05,
	}}}
	if _, err := analysis.Put(ctx, akv, tm); err != nil {
		p.t.Fatal(err)
	}
	svc.Strategy.Analysis = []string{"jobs"}
	if _, err := spec.Apply(ctx, p.services, svc); err != nil {
		p.t.Fatal(err)
	}
}

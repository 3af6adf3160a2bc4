package analysis

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	cw "github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/redblack/redblack/shared/cwclient"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit/moto"
)

// TestCloudWatchProvider: the cloudwatch provider against moto, through
// the real SDK's serialization. Two groups put a minute's Jobs and Failed
// counts and a latency for each of the last four minutes: a value reads
// the newest latency, a ratio's events and total are the Sums since the
// judgement began, and the judge fails the group that fails 30 % of its
// jobs. A group without datapoints, a judgement without a start and an
// unknown region are errors, never a number.
func TestCloudWatchProvider(t *testing.T) {
	srv := moto.Start(t)
	client := cwclient.New(srv.Config(t))
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Minute)
	for _, g := range []struct {
		group          string
		failed, millis float64
	}{{"hello-v001", 1, 20}, {"hello-v002", 30, 35}} {
		dims := []cwtypes.Dimension{{Name: sdkaws.String("Group"), Value: sdkaws.String(g.group)}}
		var data []cwtypes.MetricDatum
		for i := 4; i >= 1; i-- {
			at := sdkaws.Time(now.Add(-time.Duration(i) * time.Minute))
			data = append(data,
				cwtypes.MetricDatum{MetricName: sdkaws.String("Jobs"), Dimensions: dims, Timestamp: at, Value: sdkaws.Float64(100)},
				cwtypes.MetricDatum{MetricName: sdkaws.String("Failed"), Dimensions: dims, Timestamp: at, Value: sdkaws.Float64(g.failed)},
				cwtypes.MetricDatum{MetricName: sdkaws.String("LatencyMs"), Dimensions: dims, Timestamp: at, Value: sdkaws.Float64(g.millis + float64(i))})
		}
		if _, err := client.PutMetricData(ctx, &cw.PutMetricDataInput{Namespace: sdkaws.String("Hello"), MetricData: data}); err != nil {
			t.Fatal(err)
		}
	}
	r := Reader{CloudWatch: func(_ context.Context, region string) (*cw.Client, error) {
		if region != "us-east-1" {
			return nil, errors.New("no such region here")
		}
		return client, nil
	}}
	since := now.Add(-5 * time.Minute)
	value := Metric{Provider: ProviderCloudWatch, Address: "us-east-1", Kind: KindValue, Timeout: spec.Duration(5 * time.Second)}
	if x, err := r.Read(ctx, value, "Hello LatencyMs Average Group={{group}}", Vars{Group: "hello-v002", Since: since}); err != nil || x != 36 {
		t.Fatalf("the newest latency of hello-v002: %v %v, want 36", x, err)
	}
	ratio := Metric{Provider: ProviderCloudWatch, Address: "us-east-1", Kind: KindRatio, Timeout: spec.Duration(5 * time.Second)}
	for q, want := range map[string]float64{"Hello Jobs Sum Group={{group}}": 400, "Hello Failed Sum Group={{group}}": 120} {
		if x, err := r.Read(ctx, ratio, q, Vars{Group: "hello-v002", Since: since}); err != nil || x != want {
			t.Fatalf("%s since %s: %v %v, want %v", q, since, x, err, want)
		}
	}
	for _, c := range []struct {
		m     Metric
		query string
		v     Vars
		want  string
	}{
		{value, "Hello LatencyMs Average Group={{group}}", Vars{Group: "hello-v009"}, "no datapoint"},
		{ratio, "Hello Jobs Sum Group={{group}}", Vars{Group: "hello-v001"}, "the judgement's start"},
		{Metric{Provider: ProviderCloudWatch, Address: "eu-west-3", Kind: KindValue, Timeout: spec.Duration(time.Second)}, "Hello Jobs Sum", Vars{}, "no such region"},
	} {
		if x, err := r.Read(ctx, c.m, c.query, c.v); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s for %+v: %v %v, want an error saying %q", c.query, c.v, x, err, c.want)
		}
	}

	// the judge: hello-v002 fails 30 % of its jobs, hello-v001 1 %
	j := &Judge{Alpha: 0.005, MinSamples: 50, Every: time.Minute, Canary: Vars{Group: "hello-v002"}}
	j.Add([]Template{{Name: "jobs", Metrics: []Metric{{Name: "jobs_failed", Provider: ProviderCloudWatch, Address: "us-east-1", Kind: KindRatio,
		Events: "Hello Failed Sum Group={{group}}", Total: "Hello Jobs Sum Group={{group}}", Direction: "increase", Tolerance: 0.05, Timeout: spec.Duration(5 * time.Second)}}}})
	// the first reading at the judgement's start (nothing counted yet),
	// the next from CloudWatch: the Sums since then
	base, can := Vars{Group: "hello-v001", Since: since}, Vars{Group: "hello-v002", Since: since}
	st := j.Observe(nil, Readings{"jobs/jobs_failed": {Values: []float64{0, 0, 0, 0}}})
	st = j.Observe(st, j.Read(ctx, r, base, can))
	v := j.Look(st)[0]
	if v.Bad == "" || !strings.Contains(v.Bad, "cloudwatch: Hello Failed Sum Group=hello-v002") {
		t.Fatalf("the judge of hello-v002 against hello-v001: %+v", v)
	}
	t.Log(v.Bad)
}

func TestCloudWatchValidation(t *testing.T) {
	base := Template{Name: "jobs", Owner: "t", Metrics: []Metric{{Name: "m", Provider: ProviderCloudWatch, Address: "us-east-1", Kind: KindRatio,
		Events: "Hello Failed Sum Group={{group}}", Total: "Hello Jobs Sum Group={{group}}"}}}
	base.Default()
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
	for field, mut := range map[string]func(m *Metric){
		"metrics[0].address": func(m *Metric) { m.Address = "http://169.254.169.254" },
		"metrics[0].events":  func(m *Metric) { m.Events = "Hello Failed Average" }, // a ratio's counts are Sums
		"metrics[0].total":   func(m *Metric) { m.Total = "Hello Jobs p99.9.9" },
		"metrics[0].query":   func(m *Metric) { m.Kind, m.Events, m.Total, m.Query = KindValue, "", "", "Hello Jobs Sum Group" },
	} {
		tm := base
		tm.Metrics = []Metric{base.Metrics[0]}
		mut(&tm.Metrics[0])
		err := tm.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}

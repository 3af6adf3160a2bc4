// Package cloudwatch reads an ALB target group's traffic from CloudWatch —
// RequestCount, HTTPCode_Target_5XX_Count and TargetResponseTime, with
// GetMetricData — and turns it into the same metrics samples the router
// publishes, so the canary judge and the watchdog work unchanged on AWS (as
// Kayenta and Flagger read CloudWatch).
package cloudwatch

import (
	"context"
	"fmt"
	"sort"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	cw "github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/redblack/redblack/shared/loop"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/routing"
)

// Namespace of the ALB's metrics.
const Namespace = "AWS/ApplicationELB"

// Source reads samples of target groups.
type Source struct {
	client *cw.Client
	// LoadBalancer is the LoadBalancer dimension ("app/edge/50dc6c495c0c9188").
	LoadBalancer string
	// Period of the statistics in seconds (default 60; 1, 5, 10 or 30 for
	// high-resolution metrics).
	Period int32
}

// New builds a source on a CloudWatch client.
func New(client *cw.Client, loadBalancer string) *Source {
	return &Source{client: client, LoadBalancer: loadBalancer, Period: 60}
}

// Sample reads the target group's traffic in [start, end) (targetGroup is the
// TargetGroup dimension, "targetgroup/hello-v001/943f017f100becff") as a
// sample of group. CloudWatch gives an average response time per period, not
// a histogram: each period's requests are put in the latency bucket of its
// average, so the judge compares period averages — coarser than the
// router's own histograms.
func (s *Source) Sample(ctx context.Context, service, group, targetGroup string, start, end time.Time) (metrics.Sample, error) {
	dims := []cwtypes.Dimension{{Name: sdkaws.String("TargetGroup"), Value: sdkaws.String(targetGroup)}}
	if s.LoadBalancer != "" {
		dims = append(dims, cwtypes.Dimension{Name: sdkaws.String("LoadBalancer"), Value: sdkaws.String(s.LoadBalancer)})
	}
	query := func(id, metric string, stat string) cwtypes.MetricDataQuery {
		return cwtypes.MetricDataQuery{Id: sdkaws.String(id), MetricStat: &cwtypes.MetricStat{
			Metric: &cwtypes.Metric{Namespace: sdkaws.String(Namespace), MetricName: sdkaws.String(metric), Dimensions: dims},
			Period: sdkaws.Int32(s.Period), Stat: sdkaws.String(stat),
		}}
	}
	out, err := s.client.GetMetricData(ctx, &cw.GetMetricDataInput{
		StartTime: sdkaws.Time(start), EndTime: sdkaws.Time(end),
		MetricDataQueries: []cwtypes.MetricDataQuery{
			query("requests", "RequestCount", "Sum"),
			query("errors", "HTTPCode_Target_5XX_Count", "Sum"),
			query("latency", "TargetResponseTime", "Average"),
		},
	})
	if err != nil {
		return metrics.Sample{}, fmt.Errorf("cloudwatch: %s: %w", group, err)
	}
	series := map[string]map[time.Time]float64{}
	for _, r := range out.MetricDataResults {
		m := map[time.Time]float64{}
		for i, ts := range r.Timestamps {
			if i < len(r.Values) {
				m[ts] += r.Values[i]
			}
		}
		series[sdkaws.ToString(r.Id)] = m
	}
	bounds := make([]int64, len(routing.Buckets))
	for i, b := range routing.Buckets {
		bounds[i] = b.Microseconds()
	}
	smp := metrics.Sample{Service: service, Group: group, Router: "cloudwatch", Start: start, End: end,
		BucketsMicros: bounds, Latency: make([]uint64, len(bounds)+1)}
	var periods []time.Time
	for ts := range series["requests"] {
		periods = append(periods, ts)
	}
	sort.Slice(periods, func(i, j int) bool { return periods[i].Before(periods[j]) })
	for _, ts := range periods {
		n := uint64(series["requests"][ts])
		e := min(uint64(series["errors"][ts]), n)
		smp.Requests += n
		smp.Status5xx += e
		smp.Status2xx += n - e
		avg := time.Duration(series["latency"][ts] * float64(time.Second))
		i := sort.Search(len(routing.Buckets), func(i int) bool { return avg <= routing.Buckets[i] })
		smp.Latency[i] += n
		smp.LatencySumNs += uint64(avg) * n
	}
	return smp, nil
}

// Bridge publishes the CloudWatch samples of every routed group onto the
// METRICS stream, where the canary judge and the watchdog read them as they
// read the router's own: on AWS the traffic goes through the ALB, not the
// router, so CloudWatch is where it is counted.
type Bridge struct {
	Source *Source
	// Dimension gives a group's TargetGroup dimension
	// ("targetgroup/<name>/<id>").
	Dimension func(ctx context.Context, group string) (string, error)
	// Every is how often it reads (default the source's period).
	Every time.Duration
	// Lag is how far behind now it reads, for CloudWatch to have the
	// period complete (default 2 periods).
	Lag time.Duration
}

// Run reads and publishes until ctx ends. groups lists the routed groups of
// every service.
func (b *Bridge) Run(ctx context.Context, groups func(ctx context.Context) (map[string][]string, error), publish func(ctx context.Context, s metrics.Sample) error) {
	period := time.Duration(b.Source.Period) * time.Second
	every, lag := b.Every, b.Lag
	if every <= 0 {
		every = period
	}
	if lag <= 0 {
		lag = 2 * period
	}
	last := map[string]time.Time{}
	loop.Every(ctx, every, func() {
		end := time.Now().Add(-lag).Truncate(period)
		gs, err := groups(ctx)
		if err != nil {
			return
		}
		for service, names := range gs {
			for _, g := range names {
				start, ok := last[g]
				if !ok {
					start = end.Add(-period)
				}
				if !end.After(start) {
					continue
				}
				dim, err := b.Dimension(ctx, g)
				if err != nil {
					continue
				}
				s, err := b.Source.Sample(ctx, service, g, dim, start, end)
				if err != nil {
					continue
				}
				if err := publish(ctx, s); err == nil {
					last[g] = end
				}
			}
		}
	})
}

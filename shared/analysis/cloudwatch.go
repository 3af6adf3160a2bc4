package analysis

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	cw "github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/redblack/redblack/shared/cwclient"
)

// The cloudwatch provider reads a metric of CloudWatch with GetMetricData.
// A template metric's address is the AWS region; each query is
//
//	<namespace> <metric name> <statistic> [<dimension>=<value> …]
//
// (AWS/ApplicationELB HTTPCode_Target_5XX_Count Sum
// TargetGroup=targetgroup/{{group}}/…), the statistic Sum, Average,
// Minimum, Maximum, SampleCount or a percentile pNN. A value is the
// newest datapoint of the last CloudWatchWindow, one a minute. A ratio
// needs counts that only grow, as Prometheus's counters do: its events and
// total are Sums since the judgement began (Vars.Since), so its queries'
// statistic must be Sum.

// CloudWatchWindow is how far back a value reading looks for its newest
// datapoint (CloudWatch delivers a minute's statistics minutes late).
const CloudWatchWindow = 10 * time.Minute

// MaxDimensions bounds a cloudwatch query's dimensions (CloudWatch's own
// limit).
const MaxDimensions = 30

// regionRE is an AWS region's shape (us-east-1, eu-central-2, us-gov-west-1).
var regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)

var statRE = regexp.MustCompile(`^(Sum|Average|Minimum|Maximum|SampleCount|p[0-9]{1,2}(\.[0-9]{1,2})?)$`)

// cwQuery is a parsed cloudwatch query.
type cwQuery struct {
	namespace, metric, stat string
	dims                    []cwtypes.Dimension
}

// parseCloudWatch reads a query (rendered or not: a placeholder is a
// value's text).
func parseCloudWatch(q string) (cwQuery, error) {
	f := strings.Fields(q)
	if len(f) < 3 {
		return cwQuery{}, fmt.Errorf("want <namespace> <metric name> <statistic> [<dimension>=<value> …]")
	}
	out := cwQuery{namespace: f[0], metric: f[1], stat: f[2]}
	if !statRE.MatchString(out.stat) {
		return cwQuery{}, fmt.Errorf("statistic %q: want Sum, Average, Minimum, Maximum, SampleCount or pNN", out.stat)
	}
	if len(f)-3 > MaxDimensions {
		return cwQuery{}, fmt.Errorf("%d dimensions: at most %d", len(f)-3, MaxDimensions)
	}
	for _, d := range f[3:] {
		name, value, ok := strings.Cut(d, "=")
		if !ok || name == "" || value == "" {
			return cwQuery{}, fmt.Errorf("dimension %q: want <name>=<value>", d)
		}
		out.dims = append(out.dims, cwtypes.Dimension{Name: sdkaws.String(name), Value: sdkaws.String(value)})
	}
	return out, nil
}

// validateCloudWatch checks a cloudwatch metric's region and queries.
func validateCloudWatch(m Metric, bad func(field, format string, args ...any), f string) {
	if !regionRE.MatchString(m.Address) {
		bad(f+".address", "%q: want an AWS region (us-east-1)", m.Address)
	}
}

// cloudWatchClients are the default clients by region: the SDK's default
// configuration (its credentials chain, AWS_ENDPOINT_URL).
var cloudWatchClients sync.Map

func defaultCloudWatch(ctx context.Context, region string) (*cw.Client, error) {
	if c, ok := cloudWatchClients.Load(region); ok {
		return c.(*cw.Client), nil
	}
	ac, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return nil, err
	}
	c, _ := cloudWatchClients.LoadOrStore(region, cwclient.New(ac))
	return c.(*cw.Client), nil
}

// cloudwatch reads one query for a metric of kind: a value's newest
// datapoint, or a ratio's Sum since v.Since.
func (r Reader) cloudwatch(ctx context.Context, region, kind, query string, since, at time.Time) (float64, error) {
	q, err := parseCloudWatch(query)
	if err != nil {
		return 0, fmt.Errorf("cloudwatch: %w", err)
	}
	clients := r.CloudWatch
	if clients == nil {
		clients = defaultCloudWatch
	}
	c, err := clients(ctx, region)
	if err != nil {
		return 0, fmt.Errorf("cloudwatch %s: %w", region, err)
	}
	end := at.Truncate(time.Minute).Add(time.Minute)
	start, period := end.Add(-CloudWatchWindow), int32(60)
	if kind == KindRatio {
		if since.IsZero() {
			return 0, fmt.Errorf("cloudwatch: %w: a ratio's sums need the judgement's start", ErrNoData)
		}
		// one period from the judgement's start: the Sum since then
		start = since.Truncate(time.Minute)
		period = int32(max(60, end.Sub(start)/time.Second))
	}
	out, err := c.GetMetricData(ctx, &cw.GetMetricDataInput{
		StartTime: sdkaws.Time(start), EndTime: sdkaws.Time(end), ScanBy: cwtypes.ScanByTimestampDescending,
		MetricDataQueries: []cwtypes.MetricDataQuery{{Id: sdkaws.String("m"), MetricStat: &cwtypes.MetricStat{
			Metric: &cwtypes.Metric{Namespace: sdkaws.String(q.namespace), MetricName: sdkaws.String(q.metric), Dimensions: q.dims},
			Period: sdkaws.Int32(period), Stat: sdkaws.String(q.stat),
		}}},
	})
	if err != nil {
		return 0, fmt.Errorf("cloudwatch %s: %w", region, err)
	}
	if len(out.MetricDataResults) != 1 || len(out.MetricDataResults[0].Values) == 0 {
		return 0, fmt.Errorf("cloudwatch %s: %w: no datapoint of %s %s in %s..%s", region, ErrNoData, q.namespace, q.metric, start.Format(time.TimeOnly), end.Format(time.TimeOnly))
	}
	vals, times := out.MetricDataResults[0].Values, out.MetricDataResults[0].Timestamps
	if kind == KindRatio {
		var sum float64
		for _, x := range vals {
			sum += x
		}
		return sum, nil
	}
	newest := 0 // ScanByTimestampDescending; but a server may not sort
	for i := range times {
		if i < len(vals) && times[i].After(times[newest]) {
			newest = i
		}
	}
	return vals[newest], nil
}

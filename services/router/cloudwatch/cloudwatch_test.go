package cloudwatch_test

import (
	"context"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	cw "github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/redblack/redblack/services/router/cloudwatch"
	"github.com/redblack/redblack/shared/cwclient"
	"github.com/redblack/redblack/shared/testkit/moto"
)

// TestRoundTripOnMoto: the ALB metrics of a target group are put into
// CloudWatch (moto), read back with GetMetricData and come out as one
// sample of the group: requests, 5xx and the latency bucket of the average.
func TestRoundTripOnMoto(t *testing.T) {
	srv := moto.Start(t)
	client := cwclient.New(srv.Config(t))
	ctx := context.Background()
	tg := "targetgroup/hello-v002/943f017f100becff"
	at := time.Now().UTC().Truncate(time.Minute).Add(-2 * time.Minute)
	dims := []cwtypes.Dimension{{Name: sdkaws.String("TargetGroup"), Value: sdkaws.String(tg)}}
	put := func(name string, v float64, unit cwtypes.StandardUnit) {
		if _, err := client.PutMetricData(ctx, &cw.PutMetricDataInput{Namespace: sdkaws.String(cloudwatch.Namespace),
			MetricData: []cwtypes.MetricDatum{{MetricName: sdkaws.String(name), Dimensions: dims, Timestamp: sdkaws.Time(at), Value: sdkaws.Float64(v), Unit: unit}}}); err != nil {
			t.Fatal(err)
		}
	}
	put("RequestCount", 1200, cwtypes.StandardUnitCount)
	put("HTTPCode_Target_5XX_Count", 36, cwtypes.StandardUnitCount)
	put("TargetResponseTime", 0.012, cwtypes.StandardUnitSeconds)

	src := cloudwatch.New(client, "")
	s, err := src.Sample(ctx, "hello", "hello-v002", tg, at.Add(-time.Minute), at.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests != 1200 || s.Status5xx != 36 || s.Errors() != 36 || s.Group != "hello-v002" {
		t.Fatalf("sample %+v", s)
	}
	var inBucket uint64
	var bound int64
	for i, c := range s.Latency {
		if c > 0 {
			inBucket, bound = c, s.BucketsMicros[i]
		}
	}
	if inBucket != 1200 || bound < 12000 || bound > 12000*1.2 {
		t.Fatalf("latency: %d requests in the bucket up to %dµs", inBucket, bound)
	}
}

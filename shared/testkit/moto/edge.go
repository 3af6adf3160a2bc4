package moto

import (
	"context"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	cw "github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/redblack/redblack/shared/loop"
)

// Edge is what a release behind an ALB needs on moto: two subnets of the
// default VPC, an AMI, and a load balancer whose listener forwards to a
// boot target group until the first release moves it.
type Edge struct {
	Subnets  []string
	VPC, AMI string
	Listener string // the listener's ARN
}

// NewEdge makes the load balancer, its boot target group and its listener.
func NewEdge(t testing.TB, ac sdkaws.Config) Edge {
	t.Helper()
	ctx := context.Background()
	e2 := ec2.NewFromConfig(ac)
	subnets, err := e2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) < 2 {
		t.Fatalf("moto subnets: %v", err)
	}
	images, err := e2.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto images: %v", err)
	}
	e := Edge{VPC: sdkaws.ToString(subnets.Subnets[0].VpcId), AMI: sdkaws.ToString(images.Images[0].ImageId),
		Subnets: []string{sdkaws.ToString(subnets.Subnets[0].SubnetId), sdkaws.ToString(subnets.Subnets[1].SubnetId)}}
	lbc := elb.NewFromConfig(ac)
	lb, err := lbc.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{Name: sdkaws.String("edge"), Subnets: e.Subnets})
	if err != nil {
		t.Fatal(err)
	}
	boot, err := lbc.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{Name: sdkaws.String("boot"), Protocol: elbtypes.ProtocolEnumHttp, Port: sdkaws.Int32(8080), VpcId: sdkaws.String(e.VPC)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := lbc.CreateListener(ctx, &elb.CreateListenerInput{LoadBalancerArn: lb.LoadBalancers[0].LoadBalancerArn,
		Protocol: elbtypes.ProtocolEnumHttp, Port: sdkaws.Int32(80),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: boot.TargetGroups[0].TargetGroupArn}}})
	if err != nil {
		t.Fatal(err)
	}
	e.Listener = sdkaws.ToString(l.Listeners[0].ListenerArn)
	return e
}

// Traffic is what FeedALB publishes for one group in one second.
type Traffic struct {
	Requests, Errors float64 // 5xx
	Latency          time.Duration
}

// FeedALB publishes, every second until ctx ends, the ALB's metrics
// (AWS/ApplicationELB, high resolution) of every group that weights gives
// traffic, as CloudWatch would have them, through c (a client speaking
// the query protocol, which moto speaks): dimension names a group's
// TargetGroup dimension, traffic what it served. It returns when ctx ends.
func FeedALB(ctx context.Context, c *cw.Client, weights func(context.Context) map[string]int,
	dimension func(context.Context, string) (string, error), traffic func(group string) Traffic) {
	loop.Every(ctx, time.Second, func() {
		for g, w := range weights(ctx) {
			if w == 0 {
				continue // a group without traffic serves none (and may be gone)
			}
			dim, err := dimension(ctx, g)
			if err != nil {
				continue
			}
			tr := traffic(g)
			dims := []cwtypes.Dimension{{Name: sdkaws.String("TargetGroup"), Value: sdkaws.String(dim)}}
			now := time.Now().UTC()
			datum := func(name string, v float64) cwtypes.MetricDatum {
				return cwtypes.MetricDatum{MetricName: sdkaws.String(name), Dimensions: dims, Timestamp: sdkaws.Time(now), Value: sdkaws.Float64(v), StorageResolution: sdkaws.Int32(1)}
			}
			_, _ = c.PutMetricData(ctx, &cw.PutMetricDataInput{Namespace: sdkaws.String("AWS/ApplicationELB"), MetricData: []cwtypes.MetricDatum{
				datum("RequestCount", tr.Requests), datum("HTTPCode_Target_5XX_Count", tr.Errors), datum("TargetResponseTime", tr.Latency.Seconds()),
			}})
		}
	})
}

package aws_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/fleettest"
	"github.com/redblack/redblack/shared/events"
	rbspec "github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit/moto"
)

// onMoto builds the provider on a fresh moto: a subnet of its default VPC
// and one of its AMIs.
func onMoto(t *testing.T, srv *moto.Server) (*aws.Provider, events.Artifact) {
	srv.Reset(t)
	ac := srv.Config(t)
	ctx := context.Background()
	e := ec2.NewFromConfig(ac)
	subnets, err := e.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) == 0 {
		t.Fatalf("moto subnets: %v", err)
	}
	images, err := e.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("moto images: %v", err)
	}
	p := aws.FromConfig(aws.Config{Subnets: []string{sdkaws.ToString(subnets.Subnets[0].SubnetId)}}, ac)
	return p, events.Artifact{AMI: sdkaws.ToString(images.Images[0].ImageId)}
}

// TestBehaviourOnMoto runs the provider behaviour suite (create, instances,
// resize, terminate and replacement, destroy, list) against moto.
func TestBehaviourOnMoto(t *testing.T) {
	srv := moto.Start(t)
	fleettest.Run(t, func(t *testing.T) fleettest.Harness {
		p, art := onMoto(t, srv)
		return fleettest.Harness{Provider: p, Artifact: art, Timeout: 20 * time.Second}
	})
}

// TestDrainBeforeDestroyOnMoto: a group attached to its target group is
// detached, left to drain, then deleted with its target group. A release
// of the target group that fails (the ALB still weighting it) leaves the
// Auto Scaling group, so the retry finds it and releases the target group.
func TestDrainBeforeDestroyOnMoto(t *testing.T) {
	srv := moto.Start(t)
	_, art := onMoto(t, srv)
	ac := srv.Config(t)
	ctx := context.Background()
	subnets, _ := ec2.NewFromConfig(ac).DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	lbc := elb.NewFromConfig(ac)
	released, refuse := "", true
	errWeighted := errors.New("target group has weight")
	p := aws.FromConfig(aws.Config{
		Subnets: []string{sdkaws.ToString(subnets.Subnets[0].SubnetId)}, Drain: 300 * time.Millisecond,
		TargetGroup: func(ctx context.Context, group string) (string, error) {
			out, err := lbc.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{Name: sdkaws.String(group), Protocol: elbtypes.ProtocolEnumHttp,
				Port: sdkaws.Int32(8080), VpcId: subnets.Subnets[0].VpcId})
			if err != nil {
				return "", err
			}
			return sdkaws.ToString(out.TargetGroups[0].TargetGroupArn), nil
		},
		ReleaseTargetGroup: func(_ context.Context, service, group string) error {
			if refuse {
				refuse = false
				return errWeighted
			}
			released = service + "/" + group
			return nil
		},
	}, ac)
	if _, err := p.CreateGroup(ctx, fleet.GroupSpec{Service: "hello", Group: "hello-v001", Version: "v1", Capacity: 2, Artifact: art}); err != nil {
		t.Fatal(err)
	}
	fleettest.WaitUp(t, p, "hello-v001", 2, 20*time.Second)
	start := time.Now()
	if err := p.DestroyGroup(ctx, "hello-v001"); !errors.Is(err, errWeighted) {
		t.Fatalf("destroy with the target group's release failing: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("released in %s: no drain", d)
	}
	if _, err := p.DescribeGroup(ctx, "hello-v001"); err != nil {
		t.Fatalf("the group is gone though its target group was not released: %v", err)
	}
	if err := p.DestroyGroup(ctx, "hello-v001"); err != nil {
		t.Fatal(err)
	}
	if released != "hello/hello-v001" {
		t.Fatalf("target group released: %q", released)
	}
	if _, err := p.DescribeGroup(ctx, "hello-v001"); !errors.Is(err, fleet.ErrGroupNotFound) {
		t.Fatalf("after destroy: %v", err)
	}
}

// TestCheckImageOnMoto: a request's own AMI is allowed by its owner or its
// name prefix, as DescribeImages reports them, and refused otherwise.
func TestCheckImageOnMoto(t *testing.T) {
	srv := moto.Start(t)
	p, art := onMoto(t, srv)
	ctx := context.Background()
	out, err := ec2.NewFromConfig(srv.Config(t)).DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{art.AMI}})
	if err != nil || len(out.Images) != 1 {
		t.Fatalf("moto image: %v", err)
	}
	owner, name := sdkaws.ToString(out.Images[0].OwnerId), sdkaws.ToString(out.Images[0].Name)
	if owner == "" || len(name) < 3 {
		t.Fatalf("moto image %s without an owner or a name: %q %q", art.AMI, owner, name)
	}
	if err := p.CheckImage(ctx, art.AMI, []string{owner}, ""); err != nil {
		t.Errorf("owner %s allowed: %v", owner, err)
	}
	if err := p.CheckImage(ctx, art.AMI, nil, name[:3]); err != nil {
		t.Errorf("name prefix %q allowed: %v", name[:3], err)
	}
	if err := p.CheckImage(ctx, art.AMI, []string{"000000000000"}, "no-such-prefix-"); err == nil {
		t.Error("an image of another owner and name was allowed")
	}
	if err := p.CheckImage(ctx, "ami-00000000deadbeef", []string{owner}, ""); err == nil {
		t.Error("an image that does not exist was allowed")
	}
}

// TestTargetTrackingOnMoto: an autoscaled production group gets the
// autoscale bounds and a target-tracking policy, read back through the real
// SDK: average CPU, or the ALB's requests per target (per minute) labelled
// with its target group and load balancer. Requests without a target group
// are refused, and nothing is left of that group.
func TestTargetTrackingOnMoto(t *testing.T) {
	srv := moto.Start(t)
	_, art := onMoto(t, srv)
	ac := srv.Config(t)
	ctx := context.Background()
	subnets, _ := ec2.NewFromConfig(ac).DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	lbc := elb.NewFromConfig(ac)
	var ids []string
	for _, s := range subnets.Subnets {
		ids = append(ids, sdkaws.ToString(s.SubnetId))
	}
	lbOut, err := lbc.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{Name: sdkaws.String("edge"), Subnets: ids[:min(2, len(ids))]})
	if err != nil {
		t.Fatal(err)
	}
	lbARN := sdkaws.ToString(lbOut.LoadBalancers[0].LoadBalancerArn)
	var tgARN string
	p := aws.FromConfig(aws.Config{
		Subnets: ids[:1],
		TargetGroup: func(ctx context.Context, group string) (string, error) {
			out, err := lbc.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{Name: sdkaws.String(group), Protocol: elbtypes.ProtocolEnumHttp,
				Port: sdkaws.Int32(8080), VpcId: subnets.Subnets[0].VpcId})
			if err != nil {
				return "", err
			}
			tgARN = sdkaws.ToString(out.TargetGroups[0].TargetGroupArn)
			_, err = lbc.CreateListener(ctx, &elb.CreateListenerInput{LoadBalancerArn: sdkaws.String(lbARN), Port: sdkaws.Int32(80), Protocol: elbtypes.ProtocolEnumHttp,
				DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: sdkaws.String(tgARN)}}})
			return tgARN, err
		},
	}, ac)
	as := autoscaling.NewFromConfig(ac)
	policy := func(group string) astypes.ScalingPolicy {
		t.Helper()
		out, err := as.DescribePolicies(ctx, &autoscaling.DescribePoliciesInput{AutoScalingGroupName: sdkaws.String(group)})
		if err != nil || len(out.ScalingPolicies) != 1 {
			t.Fatalf("policies of %s: %v %+v", group, err, out)
		}
		return out.ScalingPolicies[0]
	}
	scale := &rbspec.Autoscale{Min: 2, Max: 6, TargetRequestsPerInstance: 50, ScaleUpCooldown: rbspec.Duration(90 * time.Second)}
	if _, err := p.CreateGroup(ctx, fleet.GroupSpec{Service: "edge", Group: "edge-v001", Version: "v1", Capacity: 3, Artifact: art, Autoscale: scale}); err != nil {
		t.Fatal(err)
	}
	pol := policy("edge-v001")
	tt := pol.TargetTrackingConfiguration
	_, lbSuffix, _ := strings.Cut(lbARN, ":loadbalancer/")
	_, tgSuffix, _ := strings.Cut(tgARN, ":targetgroup/")
	if sdkaws.ToString(pol.PolicyType) != "TargetTrackingScaling" || tt == nil || sdkaws.ToFloat64(tt.TargetValue) != 3000 ||
		tt.PredefinedMetricSpecification.PredefinedMetricType != astypes.MetricTypeALBRequestCountPerTarget ||
		sdkaws.ToString(tt.PredefinedMetricSpecification.ResourceLabel) != lbSuffix+"/targetgroup/"+tgSuffix {
		t.Fatalf("requests policy: %+v %+v", pol, tt)
	}
	groups, _ := as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"edge-v001"}})
	if g := groups.AutoScalingGroups[0]; sdkaws.ToInt32(g.MinSize) != 2 || sdkaws.ToInt32(g.MaxSize) != 6 || sdkaws.ToInt32(g.DesiredCapacity) != 3 {
		t.Fatalf("bounds: min %d max %d desired %d", sdkaws.ToInt32(g.MinSize), sdkaws.ToInt32(g.MaxSize), sdkaws.ToInt32(g.DesiredCapacity))
	}

	cpu := aws.FromConfig(aws.Config{Subnets: ids[:1]}, ac)
	if _, err := cpu.CreateGroup(ctx, fleet.GroupSpec{Service: "api", Group: "api-v001", Version: "v1", Capacity: 1, Artifact: art,
		Autoscale: &rbspec.Autoscale{Min: 1, Max: 4, TargetCPU: 60, ScaleUpCooldown: rbspec.Duration(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if tt := policy("api-v001").TargetTrackingConfiguration; tt.PredefinedMetricSpecification.PredefinedMetricType != astypes.MetricTypeASGAverageCPUUtilization || sdkaws.ToFloat64(tt.TargetValue) != 60 {
		t.Fatalf("cpu policy: %+v", tt)
	}
	_, err = cpu.CreateGroup(ctx, fleet.GroupSpec{Service: "store", Group: "store-v001", Version: "v1", Capacity: 1, Artifact: art,
		Autoscale: &rbspec.Autoscale{Min: 1, Max: 4, TargetRequestsPerInstance: 10}})
	if err == nil || !strings.Contains(err.Error(), "target group") {
		t.Fatalf("requests target without a target group: %v", err)
	}
}

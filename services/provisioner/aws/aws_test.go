package aws_test

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/fleettest"
	"github.com/redblack/redblack/shared/events"
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
// detached, left to drain, then deleted with its target group.
func TestDrainBeforeDestroyOnMoto(t *testing.T) {
	srv := moto.Start(t)
	_, art := onMoto(t, srv)
	ac := srv.Config(t)
	ctx := context.Background()
	subnets, _ := ec2.NewFromConfig(ac).DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	lbc := elb.NewFromConfig(ac)
	released := ""
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
		ReleaseTargetGroup: func(_ context.Context, service, group string) error { released = service + "/" + group; return nil },
	}, ac)
	if _, err := p.CreateGroup(ctx, fleet.GroupSpec{Service: "hello", Group: "hello-v001", Version: "v1", Capacity: 2, Artifact: art}); err != nil {
		t.Fatal(err)
	}
	fleettest.WaitUp(t, p, "hello-v001", 2, 20*time.Second)
	start := time.Now()
	if err := p.DestroyGroup(ctx, "hello-v001"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("destroyed in %s: no drain", d)
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

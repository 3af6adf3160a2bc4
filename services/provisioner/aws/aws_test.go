package aws_test

import (
	"context"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/redblack/redblack/services/provisioner/aws"
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

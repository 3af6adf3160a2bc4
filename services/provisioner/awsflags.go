package provisioner

import (
	"context"
	"flag"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/alb"
	"github.com/redblack/redblack/shared/svcmain"
)

// ProviderFlags choose the provider (--provider local|aws) and configure
// the aws one; with the ALB edge's flags (alb.Flags) its Auto Scaling
// groups are attached to target groups the provisioner makes itself. One
// definition for the provisioner's binary and `up`.
type ProviderFlags struct {
	Provider       string
	Subnets        svcmain.List
	SecurityGroups svcmain.List
	InstanceType   string
	// VolumeSize (GiB) and VolumeDevice are a stateful group's slot
	// volumes'.
	VolumeSize   int
	VolumeDevice string
}

// Bind registers the flags on fs.
func (f *ProviderFlags) Bind(fs *flag.FlagSet) {
	if f.Provider == "" {
		f.Provider, f.InstanceType = "local", "t3.micro"
	}
	fs.StringVar(&f.Provider, "provider", f.Provider, "where server groups run: local (processes here) or aws (Auto Scaling groups; credentials, region and AWS_ENDPOINT_URL from the standard AWS configuration)")
	fs.Var(&f.Subnets, "aws-subnets", "aws: the groups' VPC subnets (comma-separated)")
	fs.Var(&f.SecurityGroups, "aws-security-groups", "aws: security groups of the launch templates (comma-separated)")
	fs.StringVar(&f.InstanceType, "aws-instance-type", f.InstanceType, "aws: instance type when the artifact names none")
	fs.IntVar(&f.VolumeSize, "aws-volume-size", 10, "aws: GiB of the EBS volume made for each slot of a stateful service (strategy rolling)")
	fs.StringVar(&f.VolumeDevice, "aws-volume-device", "/dev/xvdf", "aws: the device a slot's volume is attached at (the instance's boot mounts it)")
}

// Build makes the provider the flags choose: nil for local (the
// provisioner's own), the aws provider otherwise, with the edge's target
// groups when edge has listeners.
func (f *ProviderFlags) Build(ctx context.Context, edge *alb.Flags) (fleet.Provider, error) {
	switch f.Provider {
	case "local", "":
		return nil, nil
	case "aws":
	default:
		return nil, fmt.Errorf("--provider %q: want local or aws", f.Provider)
	}
	if len(f.Subnets) == 0 {
		return nil, fmt.Errorf("--provider aws needs --aws-subnets")
	}
	ac, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	if f.VolumeSize < 1 || f.VolumeSize > 16384 {
		return nil, fmt.Errorf("--aws-volume-size %d: want 1..16384 GiB", f.VolumeSize)
	}
	pc := aws.Config{Subnets: f.Subnets, SecurityGroups: f.SecurityGroups, InstanceType: f.InstanceType, Port: edge.Port,
		VolumeSize: f.VolumeSize, VolumeDevice: f.VolumeDevice}
	e, err := edge.Edge(ac)
	if err != nil {
		return nil, err
	}
	if e != nil {
		pc.TargetGroup, pc.ReleaseTargetGroup, pc.Drain = e.TargetGroup, e.DeleteTargetGroup, e.DeregistrationDelay
	}
	return aws.New(ctx, pc)
}

package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	cw "github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/spf13/cobra"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/router/alb"
	"github.com/redblack/redblack/services/router/cloudwatch"
)

// awsFlags are `redblack up`'s settings for the aws provider.
type awsFlags struct {
	provider       string
	subnets, sgs   []string
	vpc            string
	port           int
	listeners      []string // service=listener or rule ARN
	instanceType   string
	deregistration int
	metricsPeriod  int
}

func (f *awsFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.provider, "provider", "local", "where server groups run: local (processes here) or aws (Auto Scaling groups; credentials, region and AWS_ENDPOINT_URL from the standard AWS configuration)")
	fl.StringSliceVar(&f.subnets, "aws-subnets", nil, "aws: the groups' VPC subnets")
	fl.StringSliceVar(&f.sgs, "aws-security-groups", nil, "aws: security groups of the launch templates")
	fl.StringVar(&f.vpc, "aws-vpc", "", "aws: the VPC of the target groups")
	fl.IntVar(&f.port, "aws-port", 8080, "aws: the instances' service port")
	fl.StringVar(&f.instanceType, "aws-instance-type", "t3.micro", "aws: instance type when the artifact names none")
	fl.StringSliceVar(&f.listeners, "aws-listener", nil, "aws: SERVICE=ARN of the ALB listener or listener rule whose weights move that service's traffic (repeatable)")
	fl.IntVar(&f.deregistration, "aws-deregistration-delay", 30, "aws: seconds a target group drains before its instances go")
	fl.IntVar(&f.metricsPeriod, "aws-metrics-period", 60, "aws: seconds per CloudWatch period read for samples (1, 5, 10, 30 for high-resolution metrics, or a multiple of 60)")
}

// apply puts the aws provider and, with listeners, the ALB edge into cfg.
func (f *awsFlags) apply(ctx context.Context, cfg *mesh.Config) error {
	switch f.provider {
	case "local":
		return nil
	case "aws":
	default:
		return fmt.Errorf("--provider %q: want local or aws", f.provider)
	}
	if len(f.subnets) == 0 {
		return fmt.Errorf("--provider aws needs --aws-subnets")
	}
	ac, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("aws config: %w", err)
	}
	pc := aws.Config{Subnets: f.subnets, SecurityGroups: f.sgs, InstanceType: f.instanceType, Port: f.port}
	if len(f.listeners) > 0 {
		listeners := map[string]string{}
		for _, l := range f.listeners {
			svc, arn, ok := strings.Cut(l, "=")
			if !ok || svc == "" || !strings.HasPrefix(arn, "arn:") {
				return fmt.Errorf("--aws-listener %q: want SERVICE=arn:aws:elasticloadbalancing:…", l)
			}
			listeners[svc] = arn
		}
		if f.vpc == "" {
			return fmt.Errorf("--aws-listener needs --aws-vpc for the target groups")
		}
		edge := alb.New(elb.NewFromConfig(ac), f.vpc, f.port, listeners)
		edge.DeregistrationDelay = secondsOf(f.deregistration)
		pc.TargetGroup = edge.TargetGroup
		pc.ReleaseTargetGroup = edge.DeleteTargetGroup
		pc.Drain = edge.DeregistrationDelay
		cfg.Router.Edge = edge
		src := cloudwatch.New(cw.NewFromConfig(ac, cloudwatch.QueryProtocol), "")
		src.Period = int32(f.metricsPeriod)
		cfg.Router.CloudWatch = &cloudwatch.Bridge{Source: src, Dimension: edge.TargetGroupDimension}
	}
	p, err := aws.New(ctx, pc)
	if err != nil {
		return err
	}
	cfg.Provisioner.Provider = p
	return nil
}

func secondsOf(n int) time.Duration { return time.Duration(n) * time.Second }

package router

import (
	"context"
	"flag"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/redblack/redblack/services/router/cloudwatch"
	"github.com/redblack/redblack/shared/alb"
	"github.com/redblack/redblack/shared/cwclient"
)

// AWSFlags are the router's own flags for the ALB edge (beside alb.Flags):
// the CloudWatch period its samples of the ALB's traffic are read at.
type AWSFlags struct {
	MetricsPeriod int
}

// Bind registers the flags on fs.
func (f *AWSFlags) Bind(fs *flag.FlagSet) {
	if f.MetricsPeriod == 0 {
		f.MetricsPeriod = 60
	}
	fs.IntVar(&f.MetricsPeriod, "aws-metrics-period", f.MetricsPeriod, "aws: seconds per CloudWatch period read for samples (1, 5, 10, 30 for high-resolution metrics, or a multiple of 60)")
}

// Apply puts the ALB edge into cfg when edge has listeners: every weight
// change is applied at the ALB (and read back) before it is announced, and
// the groups' samples are read from CloudWatch.
func (f *AWSFlags) Apply(ctx context.Context, cfg *Config, edge *alb.Flags) error {
	if !edge.Enabled() {
		return nil
	}
	switch f.MetricsPeriod {
	case 1, 5, 10, 30:
	default:
		if f.MetricsPeriod < 60 || f.MetricsPeriod%60 != 0 {
			return fmt.Errorf("--aws-metrics-period %d: want 1, 5, 10, 30 or a multiple of 60", f.MetricsPeriod)
		}
	}
	ac, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("aws config: %w", err)
	}
	e, err := edge.Edge(ac)
	if err != nil {
		return err
	}
	src := cloudwatch.New(cwclient.New(ac), "")
	src.Period = int32(f.MetricsPeriod)
	cfg.Edge = e
	cfg.CloudWatch = &cloudwatch.Bridge{Source: src, Dimension: e.TargetGroupDimension}
	return nil
}

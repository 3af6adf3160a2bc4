package alb

import (
	"flag"
	"fmt"
	"strings"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/redblack/redblack/shared/svcmain"
)

// Flags are the ALB edge's settings, defined once for every program that
// needs them: the router moves the listeners' weights, the provisioner
// makes and deletes the target groups its Auto Scaling groups attach to,
// and `up` passes them to both.
type Flags struct {
	VPC                 string
	Port                int
	Listeners           svcmain.List // SERVICE=ARN
	DeregistrationDelay int          // seconds
}

// Bind registers the flags on fs.
func (f *Flags) Bind(fs *flag.FlagSet) {
	if f.Port == 0 {
		f.Port, f.DeregistrationDelay = 8080, 30
	}
	fs.StringVar(&f.VPC, "aws-vpc", f.VPC, "aws: the VPC of the target groups")
	fs.IntVar(&f.Port, "aws-port", f.Port, "aws: the instances' service port")
	fs.Var(&f.Listeners, "aws-listener", "aws: SERVICE=ARN of the ALB listener or listener rule whose weights move that service's traffic (repeatable, or comma-separated)")
	fs.IntVar(&f.DeregistrationDelay, "aws-deregistration-delay", f.DeregistrationDelay, "aws: seconds a target group drains before its instances go")
}

// Enabled reports whether any listener is configured: without one there is
// no ALB edge.
func (f *Flags) Enabled() bool { return len(f.Listeners) > 0 }

// Edge builds the edge on an SDK configuration, checking the flags; nil
// without listeners.
func (f *Flags) Edge(ac sdkaws.Config) (*Edge, error) {
	if !f.Enabled() {
		return nil, nil
	}
	listeners := map[string]string{}
	for _, l := range f.Listeners {
		svc, arn, ok := strings.Cut(l, "=")
		if !ok || svc == "" || !strings.HasPrefix(arn, "arn:") {
			return nil, fmt.Errorf("--aws-listener %q: want SERVICE=arn:aws:elasticloadbalancing:…", l)
		}
		listeners[svc] = arn
	}
	if f.VPC == "" {
		return nil, fmt.Errorf("--aws-listener needs --aws-vpc for the target groups")
	}
	if f.DeregistrationDelay < 0 {
		return nil, fmt.Errorf("--aws-deregistration-delay %d: want ≥ 0", f.DeregistrationDelay)
	}
	e := New(elb.NewFromConfig(ac), f.VPC, f.Port, listeners)
	e.DeregistrationDelay = time.Duration(f.DeregistrationDelay) * time.Second
	return e, nil
}

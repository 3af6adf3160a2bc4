package mesh_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	cw "github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/router/cloudwatch"
	"github.com/redblack/redblack/shared/alb"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit/moto"
)

// TestPipelineOnMoto runs the release pipeline on the AWS APIs (moto): Auto
// Scaling groups from launch templates, each attached to its own target
// group; the canary, the switch and the restore as weights on the ALB
// listener, read back; the canary judge and the bake fed from CloudWatch,
// where the test publishes each group's ALB metrics. v1 (first, no canary)
// and v2 complete; v3's new group answers 40 % 5xx once it has the traffic,
// so its bake fails and the ALB goes back to v2 before v3 is destroyed.
func TestPipelineOnMoto(t *testing.T) {
	srv := moto.Start(t)
	ac := srv.Config(t)
	ctx := context.Background()
	me := moto.NewEdge(t, ac)
	ami, vpc := me.AMI, me.VPC
	lbc := elb.NewFromConfig(ac)
	edge := alb.New(lbc, vpc, 8080, map[string]string{"hello": me.Listener})
	edge.DeregistrationDelay = 0
	provider := aws.FromConfig(aws.Config{Subnets: me.Subnets[:1], ConsistencyWait: 5 * time.Second,
		TargetGroup: edge.TargetGroup, ReleaseTargetGroup: edge.DeleteTargetGroup}, ac)
	cwc := cw.NewFromConfig(ac, cloudwatch.QueryProtocol)
	src := cloudwatch.New(cwc, "")
	src.Period = 1

	cfg := testConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.Provisioner.Provider = provider
	cfg.Router.Edge = edge
	cfg.Router.CloudWatch = &cloudwatch.Bridge{Source: src, Dimension: edge.TargetGroupDimension, Every: 500 * time.Millisecond, Lag: 2 * time.Second}
	m, err := mesh.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop() })
	p := &pipeline{t: t, m: m}
	p.attach(spec.Service{Name: "hello", Owner: "t", Provider: "aws", Capacity: 2, Artifact: spec.Artifact{AMI: ami},
		Strategy: spec.Strategy{
			Canary: spec.Canary{Weight: 20, Duration: spec.Duration(3 * time.Second), Interval: spec.Duration(500 * time.Millisecond), MinSamples: 50},
			Bake:   spec.Bake{Duration: spec.Duration(6 * time.Second)},
		}})

	// the ALB's traffic, as CloudWatch will have it: 100 requests a second
	// for every group with weight, 10 ms each; the bad group answers 40 % 5xx
	var mu sync.Mutex
	bad := ""
	dctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		moto.FeedALB(dctx, cwc, func(context.Context) map[string]int { return p.route().Weights }, edge.TargetGroupDimension, func(g string) moto.Traffic {
			mu.Lock()
			defer mu.Unlock()
			tr := moto.Traffic{Requests: 100, Latency: 10 * time.Millisecond}
			if g == bad {
				tr.Errors = 40
			}
			return tr
		})
	}()
	t.Cleanup(func() { stop(); wg.Wait() })

	weights := func() map[string]int32 {
		got, err := edge.GroupWeights(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	asg := autoscaling.NewFromConfig(ac)
	attached := func(group string) []string {
		out, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
		if err != nil || len(out.AutoScalingGroups) == 0 {
			return nil
		}
		return out.AutoScalingGroups[0].TargetGroupARNs
	}

	v1 := p.releaseArtifact("v1", events.Artifact{AMI: ami})
	p.await(v1, 60*time.Second, events.ReleaseCompleted)
	if w := weights(); w["hello-v001"] != alb.MaxWeight {
		t.Fatalf("ALB after v1: %v", w)
	}
	if tgs := attached("hello-v001"); len(tgs) != 1 || !strings.Contains(tgs[0], "targetgroup/hello-v001/") {
		t.Fatalf("hello-v001 attached to %v", tgs)
	}

	v2 := p.releaseArtifact("v2", events.Artifact{AMI: ami, InstanceType: "t3.small"})
	passed := p.await(v2, 60*time.Second, events.CanaryPassed, events.CanaryFailed)
	if passed.Type != events.CanaryPassed.Type() {
		t.Fatalf("v2's canary: %s", passed.Data)
	}
	var res events.CanaryResult
	_ = passed.DecodeData(&res)
	if res.Metrics[0].CanarySamples < 50 || res.Metrics[0].BaselineSamples < 50 {
		t.Fatalf("the canary was judged on %+v", res.Metrics[0])
	}
	p.await(v2, 60*time.Second, events.ReleaseCompleted)
	if w := weights(); w["hello-v002"] != alb.MaxWeight || w["hello-v001"] != 0 {
		t.Fatalf("ALB after v2: %v", w)
	}

	mu.Lock()
	bad = "hello-v003"
	mu.Unlock()
	v3 := p.releaseArtifact("v3", events.Artifact{AMI: ami})
	p.await(v3, 60*time.Second, events.TrafficSwitched)
	p.await(v3, 60*time.Second, events.RolledBack)
	r := p.record(v3)
	if r.Phase != release.PhaseRolledBack || !strings.Contains(r.Reason, "bake: error rate") {
		t.Fatalf("v3: %s %q", r.Phase, r.Reason)
	}
	if w := weights(); w["hello-v002"] != alb.MaxWeight || w["hello-v003"] != 0 {
		t.Fatalf("ALB after v3's rollback: %v", w)
	}
	if tgs := attached("hello-v003"); tgs != nil {
		t.Fatalf("hello-v003 still exists, attached to %v", tgs)
	}
	if out, err := lbc.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{"hello-v003"}}); err == nil && len(out.TargetGroups) > 0 {
		t.Fatal("hello-v003's target group is left")
	}
}

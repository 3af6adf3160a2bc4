package cli

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/redblack/redblack/services/provisioner"
	"github.com/redblack/redblack/shared/alb"
	"github.com/redblack/redblack/shared/cwclient"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/testkit/moto"
	"github.com/redblack/redblack/shared/topology"
)

// TestUpNodesOnAWS runs `redblack up --nodes 1 --provider aws` on moto: the
// provisioner and the router each in its own process, configured by their
// own flags (up passes them on), nothing shared between them but NATS and
// AWS. The provisioner makes the Auto Scaling groups and their target
// groups; the router moves the ALB listener's weights and reads the
// groups' CloudWatch metrics, which the test publishes as the ALB would.
// v1, v2 and v3 complete, the listener ends with all of v3's weight, and
// v1's target group is gone with its group. Every service runs in two
// copies, the provisioner too (the fleet is AWS's, seen by both); during
// v2's launch the copy observing the fleet is SIGKILLed, and the other
// takes the observer lease over and finishes the launch it did not start
// watching.
func TestUpNodesOnAWS(t *testing.T) {
	if testing.Short() {
		t.Skip("moto, a NATS node and five service processes")
	}
	srv := moto.Start(t)
	ac := srv.Config(t)
	ctx := testkit.Context(t, 4*time.Minute)
	edge0 := moto.NewEdge(t, ac)
	ami, vpc, arn := edge0.AMI, edge0.VPC, edge0.Listener
	lbc := elb.NewFromConfig(ac)
	env := []string{"AWS_ENDPOINT_URL=" + srv.URL, "AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_REGION=us-east-1"}
	u := launchUp(t, 1, env, "--copies", "2", "--provider", "aws", "--aws-subnets", edge0.Subnets[0], "--aws-vpc", vpc,
		"--aws-listener", "hello="+arn, "--aws-deregistration-delay", "0", "--aws-metrics-period", "1")
	spec := `name: hello
owner: team-hello
provider: aws
capacity: 2
artifact: {ami: ` + ami + `}
strategy:
  canary: {capacity: 1, weight: 20, duration: 3s, interval: 500ms, min_samples: 50}
  bake: {duration: 4s}
`
	if code, out, errs := u.cli("service", "apply", "-f", writeFile(t, spec)); code != 0 {
		t.Fatalf("apply: %s %s", out, errs)
	}
	js, rkv := u.admin(t, ctx, topology.BucketRoutes)
	edge := alb.New(lbc, vpc, 8080, map[string]string{"hello": arn}) // the test's own reader of the ALB
	// the ALB's traffic as CloudWatch will have it: 100 healthy requests a
	// second, 10 ms each, for every group with weight
	dctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		moto.FeedALB(dctx, cwclient.New(ac), func(ctx context.Context) map[string]int {
			rt, _, err := routes.Get(ctx, rkv, "hello")
			if err != nil {
				return nil
			}
			return rt.Weights
		}, edge.TargetGroupDimension, func(string) moto.Traffic { return moto.Traffic{Requests: 100, Latency: 10 * time.Millisecond} })
	}()
	defer func() { stop(); wg.Wait() }()
	weights := func() map[string]int32 {
		got, err := edge.GroupWeights(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if u.pids["provisioner#2"] == 0 {
		t.Fatalf("no second provisioner: %v", u.pids)
	}
	kv, _ := js.KeyValue(ctx, topology.BucketReleases)
	for _, v := range []string{"v1", "v2", "v3"} {
		if v != "v2" {
			code, out, errs := u.cli("release", "hello", "--version", v, "--artifact", ami, "--wait", "--timeout", "120s")
			if code != 0 || !strings.Contains(out, "completed") {
				t.Fatalf("release %s: %d\n%s\n%s\nup's log:\n%s", v, code, out, errs, u.logs.String())
			}
			continue
		}
		code, out, errs := u.cli("release", "hello", "--version", v, "--artifact", ami)
		var id string
		if _, err := fmt.Sscanf(out, "release %s requested:", &id); code != 0 || err != nil {
			t.Fatalf("release %s: %d %q %s", v, code, out, errs)
		}
		key := release.LeaseKey(provisioner.ObserverRole, "fleet")
		killed, pid := killLeaseHolder(t, ctx, kv, u, key, id, release.PhaseLaunching)
		died := time.Now()
		by := awaitTakeover(t, ctx, kv, key, pid)
		took := time.Since(died)
		if rec := awaitEnd(t, ctx, kv, id); rec.Phase != release.PhaseCompleted {
			t.Fatalf("%s ended %s (%s) after %s died in its launch\nup's log:\n%s", v, rec.Phase, rec.Reason, killed, u.logs.String())
		}
		t.Logf("%s: %s observed the fleet and died in the launch; %s took over in %s; the release completed %s after the death",
			v, killed, by, took.Round(time.Millisecond), time.Since(died).Round(time.Millisecond))
	}
	if w := weights(); w["hello-v003"] != alb.MaxWeight || w["hello-v002"] != 0 {
		t.Fatalf("ALB after v3: %v", w)
	}
	// v2's group is kept (disabled, for an instant rollback); v1's was
	// destroyed with its target group, by the provisioner
	if out, err := lbc.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{"hello-v001"}}); err == nil && len(out.TargetGroups) > 0 {
		t.Fatal("hello-v001's target group is left")
	}
	l, _, err := (release.Store{KV: kv}).Counter(ctx, "hello")
	if err != nil || l.Sequence != 3 {
		t.Fatalf("counter %+v %v", l, err)
	}
}

package e2e_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/router/cloudwatch"
	"github.com/redblack/redblack/shared/alb"
	"github.com/redblack/redblack/shared/cwclient"
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
	ctx := context.Background()
	r := startMoto(t, spec.Service{Name: "hello", Owner: "t", Provider: "aws", Capacity: 2,
		Strategy: spec.Strategy{
			Canary: spec.Canary{Capacity: 1, Weight: 20, Duration: spec.Duration(3 * time.Second), Interval: spec.Duration(500 * time.Millisecond), MinSamples: 50},
			Bake:   spec.Bake{Duration: spec.Duration(6 * time.Second)},
		}})
	p, ami, lbc := r.p, r.ami, r.lbc
	weights, attached := r.weights, func(group string) []string { return r.group(group).TargetGroupARNs }

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
	// completion waits for the route to give the bake's reference slice
	// back; the ALB follows the route a moment later (CI once read it at
	// 99/899 right after completed)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		w := weights()
		if w["hello-v002"] == alb.MaxWeight && w["hello-v001"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ALB after v2: %v", w)
		}
	}

	r.setBad("hello-v003")
	v3 := p.releaseArtifact("v3", events.Artifact{AMI: ami})
	p.await(v3, 60*time.Second, events.TrafficSwitched)
	p.await(v3, 60*time.Second, events.RolledBack)
	if rec := p.record(v3); rec.Phase != release.PhaseRolledBack || !strings.Contains(rec.Reason, "bake: error rate") {
		t.Fatalf("v3: %s %q", rec.Phase, rec.Reason)
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

// TestRollingOnMoto rolls a stateless service on the AWS APIs (moto) by
// count: each batch shrinks the previous version's Auto Scaling group by
// one and grows the new one's by one, the ALB's weights follow the share
// of instances, and the verify judges the two target groups' CloudWatch
// metrics apart. v1 and v2 complete, never with more than max_unavailable
// (1) of the 3 instances missing; v3 answers 40 % 5xx, fails its first
// batch's verify and is rolled back: v2 runs 3 instances and has all the
// traffic, and v3's group and target group are gone.
func TestRollingOnMoto(t *testing.T) {
	r := startMoto(t, spec.Service{Name: "hello", Owner: "t", Provider: "aws", Capacity: 3,
		Strategy: spec.Strategy{Type: spec.StrategyRolling,
			Rolling: spec.Rolling{Stateless: true, MaxUnavailable: "1", HealthGate: spec.Duration(time.Second), Verify: spec.Verify{Duration: spec.Duration(3 * time.Second)}},
			Canary:  spec.Canary{MinSamples: 50},
		}})
	p := r.p
	desired := func(g string) int { return int(sdkaws.ToInt32(r.group(g).DesiredCapacity)) }

	v1 := p.releaseArtifact("v1", events.Artifact{AMI: r.ami})
	p.await(v1, 60*time.Second, events.ReleaseCompleted, events.RolledBack)
	if rec := p.record(v1); rec.Phase != release.PhaseCompleted || rec.Rolling == nil || !rec.Rolling.ByCount {
		t.Fatalf("v1: %s %q %+v%s", rec.Phase, rec.Reason, rec.Rolling, p.story(v1))
	}
	if w, n := r.weights(), desired("hello-v001"); w["hello-v001"] != alb.MaxWeight || n != 3 {
		t.Fatalf("after v1: ALB %v, hello-v001 runs %d", w, n)
	}

	// v2, watched: the two groups' desired capacities and the ALB's weights
	ctx, stop := context.WithCancel(context.Background())
	var (
		wg      sync.WaitGroup
		fewest  = 3
		shares  = map[int32]bool{}
		watchMu sync.Mutex
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			n := desired("hello-v001") + desired("hello-v002")
			w, err := r.edge.GroupWeights(ctx, "hello")
			watchMu.Lock()
			fewest = min(fewest, n)
			if err == nil {
				shares[w["hello-v002"]] = true
			}
			watchMu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	v2 := p.releaseArtifact("v2", events.Artifact{AMI: r.ami})
	p.await(v2, 90*time.Second, events.ReleaseCompleted, events.RolledBack)
	stop()
	wg.Wait()
	if rec := p.record(v2); rec.Phase != release.PhaseCompleted {
		t.Fatalf("v2: %s %q%s", rec.Phase, rec.Reason, p.story(v2))
	}
	done := p.batches(v2, events.RollingBatchDone)
	if len(done) != 3 {
		t.Fatalf("v2's batches verified: %+v", done)
	}
	for _, b := range done[:2] { // the last batch's previous group has no traffic left
		m := b.Report.Metrics[0]
		if b.Count != 1 || b.Slots != nil || m.CanarySamples == 0 || m.BaselineSamples == 0 {
			t.Fatalf("batch %d: count %d, slots %v, judged on %+v", b.Batch, b.Count, b.Slots, m)
		}
	}
	watchMu.Lock()
	t.Logf("v2: fewest instances wanted %d; hello-v002's ALB weights seen %v", fewest, shares)
	if fewest < 2 {
		t.Errorf("the groups wanted %d instances in all during the roll: more than max_unavailable (1) of 3 missing", fewest)
	}
	third := int32(alb.MaxWeight / 3) // the route's share, scaled to the ALB's weights: ±1
	if !shares[third-1] && !shares[third] && !shares[third+1] {
		t.Errorf("the ALB never gave hello-v002 a third of the traffic: %v", shares)
	}
	watchMu.Unlock()
	if w, n := r.weights(), desired("hello-v002"); w["hello-v002"] != alb.MaxWeight || n != 3 {
		t.Fatalf("after v2: ALB %v, hello-v002 runs %d", w, n)
	}
	if g := r.group("hello-v001"); g.AutoScalingGroupName != nil {
		t.Fatalf("hello-v001 is left after v2 completed: desired %d", sdkaws.ToInt32(g.DesiredCapacity))
	}

	r.setBad("hello-v003")
	v3 := p.releaseArtifact("v3", events.Artifact{AMI: r.ami})
	p.await(v3, 60*time.Second, events.RollingRollback)
	p.await(v3, 60*time.Second, events.RolledBack)
	if rec := p.record(v3); rec.Phase != release.PhaseRolledBack || !strings.Contains(rec.Reason, "verify of batch 1 failed") {
		t.Fatalf("v3: %s %q%s", rec.Phase, rec.Reason, p.story(v3))
	}
	if w, n := r.weights(), desired("hello-v002"); w["hello-v002"] != alb.MaxWeight || w["hello-v003"] != 0 || n != 3 {
		t.Fatalf("after v3's rollback: ALB %v, hello-v002 runs %d", w, n)
	}
	if g := r.group("hello-v003"); g.AutoScalingGroupName != nil {
		t.Fatal("hello-v003's group is left")
	}
	if out, err := r.lbc.DescribeTargetGroups(context.Background(), &elb.DescribeTargetGroupsInput{Names: []string{"hello-v003"}}); err == nil && len(out.TargetGroups) > 0 {
		t.Fatal("hello-v003's target group is left")
	}
}

// TestStatefulRollingOnMoto rolls a stateful service on the AWS APIs
// (moto): each slot is an EBS volume, attached to the instance that runs
// the slot. v1 and v2 of a 2-slot service complete, and after v2 each
// slot's volume (the same one) is attached to v2's instance of that slot;
// v3 answers 40 % 5xx, fails its first batch's verify and is rolled back,
// and each volume is on a v2 instance again, with v3's group gone.
func TestStatefulRollingOnMoto(t *testing.T) {
	r := startMoto(t, spec.Service{Name: "hello", Owner: "t", Provider: "aws", Capacity: 2,
		Strategy: spec.Strategy{Type: spec.StrategyRolling,
			Rolling: spec.Rolling{MaxUnavailable: "1", HealthGate: spec.Duration(time.Second), Verify: spec.Verify{Duration: spec.Duration(3 * time.Second)}},
			Canary:  spec.Canary{MinSamples: 50},
		}})
	p := r.p
	ctx := context.Background()
	// where each slot's volume is: its id and the group of its instance
	where := func() map[string][2]string {
		vols, err := r.provider.Volumes(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][2]string{}
		for _, v := range vols {
			g := ""
			for _, name := range []string{"hello-v001", "hello-v002", "hello-v003"} {
				if grp, err := r.provider.DescribeGroup(ctx, name); err == nil {
					for _, i := range grp.Instances {
						if i.ID == v.Instance && i.Slot == v.Slot {
							g = name
						}
					}
				}
			}
			out[v.Slot] = [2]string{v.ID, g}
		}
		return out
	}

	v1 := p.releaseArtifact("v1", events.Artifact{AMI: r.ami})
	p.await(v1, 60*time.Second, events.ReleaseCompleted, events.RolledBack)
	if rec := p.record(v1); rec.Phase != release.PhaseCompleted || rec.Rolling.ByCount {
		t.Fatalf("v1: %s %q%s", rec.Phase, rec.Reason, p.story(v1))
	}
	first := where()
	if len(first) != 2 || first["hello-0"][1] != "hello-v001" || first["hello-1"][1] != "hello-v001" {
		t.Fatalf("after v1, the volumes: %v", first)
	}

	v2 := p.releaseArtifact("v2", events.Artifact{AMI: r.ami})
	p.await(v2, 90*time.Second, events.ReleaseCompleted, events.RolledBack)
	if rec := p.record(v2); rec.Phase != release.PhaseCompleted {
		t.Fatalf("v2: %s %q%s", rec.Phase, rec.Reason, p.story(v2))
	}
	for _, b := range p.batches(v2, events.RollingBatchDone) {
		if len(b.Slots) != 1 || b.Count != 1 {
			t.Fatalf("v2's batch %d: slots %v, count %d", b.Batch, b.Slots, b.Count)
		}
	}
	for slot, w := range where() {
		if w[0] != first[slot][0] || w[1] != "hello-v002" {
			t.Fatalf("after v2, %s's volume is %s on %q; it was %s", slot, w[0], w[1], first[slot][0])
		}
	}
	if w := r.weights(); w["hello-v002"] != alb.MaxWeight {
		t.Fatalf("ALB after v2: %v", w)
	}

	r.setBad("hello-v003")
	v3 := p.releaseArtifact("v3", events.Artifact{AMI: r.ami})
	// the roll back moves a volume and starts v2's instance of its slot
	// again on moto: 25 s alone, past 60 s once in CI beside the aws
	// provider's own moto tests (v2's roll has 90 s)
	p.await(v3, 120*time.Second, events.RolledBack)
	if rec := p.record(v3); rec.Phase != release.PhaseRolledBack || !strings.Contains(rec.Reason, "verify of batch 1 failed") {
		t.Fatalf("v3: %s %q%s", rec.Phase, rec.Reason, p.story(v3))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		back := where()
		ok := len(back) == 2
		for slot, w := range back {
			ok = ok && w[0] == first[slot][0] && w[1] == "hello-v002"
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after v3's rollback, the volumes: %v (first %v)", back, first)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if g := r.group("hello-v003"); g.AutoScalingGroupName != nil {
		t.Fatal("hello-v003's group is left")
	}
	if w := r.weights(); w["hello-v002"] != alb.MaxWeight || w["hello-v003"] != 0 {
		t.Fatalf("ALB after v3's rollback: %v", w)
	}
}

// batches is the data of release id's events of kind k, a rolling flow's.
func (p *pipeline) batches(id string, k events.Kind) []events.RollingBatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []events.RollingBatch
	for _, ev := range p.events {
		var b events.RollingBatch
		if ev.ReleaseID == id && ev.Type == k.Type() && ev.DecodeData(&b) == nil {
			out = append(out, b)
		}
	}
	return out
}

// motoRig is a mesh on moto's AWS APIs: the aws provider, the ALB edge,
// and the ALB's CloudWatch metrics fed for every group with weight, 100
// requests a second at 10 ms each; the bad group answers 40 % 5xx.
type motoRig struct {
	p        *pipeline
	provider *aws.Provider
	edge     *alb.Edge
	lbc      *elb.Client
	ac       sdkaws.Config
	ami      string

	mu  sync.Mutex
	bad string
}

// startMoto starts moto and the mesh on it, and applies svc (its AMI
// filled in).
func startMoto(t *testing.T, svc spec.Service) *motoRig {
	srv := moto.Start(t)
	ac := srv.Config(t)
	ctx := context.Background()
	me := moto.NewEdge(t, ac)
	lbc := elb.NewFromConfig(ac)
	edge := alb.New(lbc, me.VPC, 8080, map[string]string{"hello": me.Listener})
	edge.DeregistrationDelay = 0
	provider := aws.FromConfig(aws.Config{Subnets: me.Subnets[:1], ConsistencyWait: 5 * time.Second,
		TargetGroup: edge.TargetGroup, ReleaseTargetGroup: edge.DeleteTargetGroup}, ac)
	cwc := cwclient.New(ac)
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
	r := &motoRig{p: &pipeline{t: t, m: m}, provider: provider, edge: edge, lbc: lbc, ac: ac, ami: me.AMI}
	svc.Artifact = spec.Artifact{AMI: me.AMI}
	r.p.attach(svc)

	dctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		moto.FeedALB(dctx, cwc, func(context.Context) map[string]int { return r.p.route().Weights }, edge.TargetGroupDimension, func(g string) moto.Traffic {
			tr := moto.Traffic{Requests: 100, Latency: 10 * time.Millisecond}
			r.mu.Lock()
			defer r.mu.Unlock()
			if g == r.bad {
				tr.Errors = 40
			}
			return tr
		})
	}()
	t.Cleanup(func() { stop(); wg.Wait() })
	return r
}

// weights reads the ALB listener's weights of hello's target groups.
func (r *motoRig) weights() map[string]int32 {
	r.p.t.Helper()
	got, err := r.edge.GroupWeights(context.Background(), "hello")
	if err != nil {
		r.p.t.Fatal(err)
	}
	return got
}

// group describes an Auto Scaling group (zero if there is none).
func (r *motoRig) group(name string) astypes.AutoScalingGroup {
	out, err := autoscaling.NewFromConfig(r.ac).DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil || len(out.AutoScalingGroups) == 0 {
		return astypes.AutoScalingGroup{}
	}
	return out.AutoScalingGroups[0]
}

// setBad makes group answer 40 % 5xx from now on.
func (r *motoRig) setBad(group string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bad = group
}

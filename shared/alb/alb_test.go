package alb_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/redblack/redblack/shared/alb"
	"github.com/redblack/redblack/shared/testkit/moto"
)

// TestSwitchOnMoto: an ALB with a listener forwarding to hello-v001; the
// canary weights, the switch and the restore are set and read back; a target
// group with weight is not deleted, one without is, and a failure to look
// one up is reported.
func TestSwitchOnMoto(t *testing.T) {
	srv := moto.Start(t)
	ac := srv.Config(t)
	ctx := context.Background()
	e2 := ec2.NewFromConfig(ac)
	subnets, err := e2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil || len(subnets.Subnets) < 2 {
		t.Fatalf("moto subnets: %v", err)
	}
	vpc := sdkaws.ToString(subnets.Subnets[0].VpcId)
	client := elb.NewFromConfig(ac)
	lb, err := client.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{Name: sdkaws.String("edge"),
		Subnets: []string{sdkaws.ToString(subnets.Subnets[0].SubnetId), sdkaws.ToString(subnets.Subnets[1].SubnetId)}})
	if err != nil {
		t.Fatal(err)
	}
	edge := alb.New(client, vpc, 8080, map[string]string{})
	v1, err := edge.TargetGroup(ctx, "hello-v001")
	if err != nil {
		t.Fatal(err)
	}
	l, err := client.CreateListener(ctx, &elb.CreateListenerInput{LoadBalancerArn: lb.LoadBalancers[0].LoadBalancerArn,
		Protocol: elbtypes.ProtocolEnumHttp, Port: sdkaws.Int32(80),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: sdkaws.String(v1)}}})
	if err != nil {
		t.Fatal(err)
	}
	edge.Listeners["hello"] = sdkaws.ToString(l.Listeners[0].ListenerArn)

	steps := []map[string]int{
		{"hello-v001": 600, "hello-v002-baseline": 200, "hello-v002-canary": 200}, // canary
		{"hello-v001": 1000, "hello-v002-baseline": 0, "hello-v002-canary": 0},
		{"hello-v001": 0, "hello-v002": 1000}, // the switch
		{"hello-v001": 1000, "hello-v002": 0}, // the restore
	}
	for i, w := range steps {
		if err := edge.Apply(ctx, "hello", w); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got, err := edge.Weights(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		for g, want := range w {
			arn, _ := edge.TargetGroup(ctx, g)
			if got[arn] != alb.Scale(want) {
				t.Fatalf("step %d: %s weight %d, want %d", i, g, got[arn], alb.Scale(want))
			}
		}
	}
	if err := edge.DeleteTargetGroup(ctx, "hello", "hello-v001"); !errors.Is(err, alb.ErrHasWeight) {
		t.Fatalf("deleting the group with the traffic: %v", err)
	}
	if err := edge.DeleteTargetGroup(ctx, "hello", "hello-v002"); err != nil {
		t.Fatal(err)
	}
	if out, err := client.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{"hello-v002"}}); err == nil && len(out.TargetGroups) > 0 {
		t.Fatal("hello-v002's target group is still there")
	}
	if got, _ := edge.Weights(ctx, "hello"); len(got) != 1 { // only v001: the action holds the groups of the last Apply
		t.Fatalf("listener after delete: %v", got)
	}
	// the CloudWatch dimension of a group whose target group was released
	// is an error, and makes none (the router's bridge once made it again)
	if _, err := edge.TargetGroupDimension(ctx, "hello-v002"); !errors.Is(err, alb.ErrNoTargetGroup) {
		t.Fatalf("the dimension of a released target group: %v", err)
	}
	if out, err := client.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{"hello-v002"}}); err == nil && len(out.TargetGroups) > 0 {
		t.Fatal("looking up hello-v002's dimension made its target group again")
	}
	if d, err := edge.TargetGroupDimension(ctx, "hello-v001"); err != nil || !strings.HasPrefix(d, "targetgroup/hello-v001/") {
		t.Fatalf("the dimension of hello-v001: %q, %v", d, err)
	}
	// a group without a target group has nothing to delete; a failure to
	// look is an error (to try again on), not "none"
	if err := edge.DeleteTargetGroup(ctx, "hello", "hello-v009"); err != nil {
		t.Fatalf("deleting a target group that is not there: %v", err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if err := edge.DeleteTargetGroup(gone, "hello", "hello-v009"); err == nil {
		t.Fatal("a describe that failed was taken for a target group that is not there")
	}
}

// TestModifyListenerWire: the weights travel as
// DefaultActions.member.1.ForwardConfig.TargetGroups.member.N.Weight.
func TestModifyListenerWire(t *testing.T) {
	var mu sync.Mutex
	var forms []url.Values
	do := func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		f, _ := url.ParseQuery(string(b))
		mu.Lock()
		forms = append(forms, f)
		mu.Unlock()
		body := ""
		switch f.Get("Action") {
		case "DescribeTargetGroups":
			name := f.Get("Names.member.1")
			body = `<DescribeTargetGroupsResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><DescribeTargetGroupsResult><TargetGroups><member><TargetGroupArn>arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/` + name + `/1</TargetGroupArn><TargetGroupName>` + name + `</TargetGroupName></member></TargetGroups></DescribeTargetGroupsResult></DescribeTargetGroupsResponse>`
		case "ModifyListener":
			body = `<ModifyListenerResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><ModifyListenerResult><Listeners/></ModifyListenerResult></ModifyListenerResponse>`
		case "DescribeListeners":
			body = `<DescribeListenersResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><DescribeListenersResult><Listeners><member><ListenerArn>arn:l</ListenerArn><DefaultActions><member><Type>forward</Type><ForwardConfig><TargetGroups>` +
				`<member><TargetGroupArn>arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/hello-v001/1</TargetGroupArn><Weight>0</Weight></member>` +
				`<member><TargetGroupArn>arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/hello-v002/1</TargetGroupArn><Weight>999</Weight></member>` +
				`</TargetGroups></ForwardConfig></member></DefaultActions></member></Listeners></DescribeListenersResult></DescribeListenersResponse>`
		}
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/xml"}}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	}
	ac := sdkaws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("A", "S", ""),
		BaseEndpoint: sdkaws.String("https://aws.test"), HTTPClient: smithyhttp.ClientDoFunc(do)}
	edge := alb.New(elb.NewFromConfig(ac), "vpc-1", 8080, map[string]string{"hello": "arn:l"})
	if err := edge.Apply(context.Background(), "hello", map[string]int{"hello-v001": 0, "hello-v002": 1000}); err != nil {
		t.Fatal(err)
	}
	var mod url.Values
	for _, f := range forms {
		if f.Get("Action") == "ModifyListener" {
			mod = f
		}
	}
	for k, v := range map[string]string{
		"ListenerArn":                  "arn:l",
		"DefaultActions.member.1.Type": "forward",
		"DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/hello-v001/1",
		"DefaultActions.member.1.ForwardConfig.TargetGroups.member.1.Weight":         "0",
		"DefaultActions.member.1.ForwardConfig.TargetGroups.member.2.Weight":         "999",
	} {
		if got := mod.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	// a listener that reads back other weights than were set is an error
	if err := edge.Apply(context.Background(), "hello", map[string]int{"hello-v001": 1000, "hello-v002": 0}); err == nil || !strings.Contains(err.Error(), "reads back") {
		t.Fatalf("read-back mismatch: %v", err)
	}
}

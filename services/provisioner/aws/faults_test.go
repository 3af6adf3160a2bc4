package aws_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/fleettest"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/testkit/moto"
)

// faults sits between the SDK and moto and injects what real AWS does now
// and then: throttling (every third call of an action answers Throttling
// first), eventual consistency (the first describes after a group's create
// do not list it), and capacity errors for groups named in capacity.
type faults struct {
	next     http.Client
	mu       sync.Mutex
	calls    map[string]int
	hide     map[string]int // group → describes still to hide it from
	capacity map[string]string
	injected map[string]int // what was injected, by kind
}

func (f *faults) do(r *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(b))
	action, group := form.Get("Action"), form.Get("AutoScalingGroupName")
	if group == "" {
		group = form.Get("AutoScalingGroupNames.member.1")
	}
	f.mu.Lock()
	f.calls[action]++
	n := f.calls[action]
	code := ""
	switch {
	case n%3 == 1 && action != "":
		code = "Throttling"
	case action == "CreateAutoScalingGroup" && f.capacity[group] != "":
		code = f.capacity[group]
	}
	hideNow := action == "DescribeAutoScalingGroups" && f.hide[group] > 0
	if hideNow {
		f.hide[group]--
	}
	if code != "" {
		f.injected[code]++
	}
	if hideNow {
		f.injected["hidden"]++
	}
	f.mu.Unlock()
	if code != "" {
		body := `<ErrorResponse><Error><Type>Sender</Type><Code>` + code + `</Code><Message>injected ` + code + `</Message></Error><RequestId>x</RequestId></ErrorResponse>`
		if form.Get("Version") == "2016-11-15" { // EC2's own error document
			body = `<Response><Errors><Error><Code>` + code + `</Code><Message>injected ` + code + `</Message></Error></Errors><RequestID>x</RequestID></Response>`
		}
		return &http.Response{StatusCode: 400, Header: http.Header{"Content-Type": {"text/xml"}}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	resp, err := f.next.Do(r)
	if err == nil && action == "CreateAutoScalingGroup" && resp.StatusCode == 200 {
		f.mu.Lock()
		f.hide[group] = 3 // its first describes miss it, as AWS's can
		f.mu.Unlock()
	}
	if err != nil || !hideNow {
		return resp, err
	}
	resp.Body.Close()
	empty := `<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><DescribeAutoScalingGroupsResult><AutoScalingGroups/></DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>`
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/xml"}}, Body: io.NopCloser(strings.NewReader(empty)), Request: r}, nil
}

// withFaults is the provider on a fresh moto through the faults.
func withFaults(t *testing.T, srv *moto.Server) (*aws.Provider, *faults, events.Artifact) {
	_, art := onMoto(t, srv) // resets moto
	f := &faults{calls: map[string]int{}, hide: map[string]int{}, capacity: map[string]string{}, injected: map[string]int{}}
	ac := srv.Config(t)
	ac.HTTPClient = smithyhttp.ClientDoFunc(f.do)
	ac.Retryer = func() sdkaws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 5
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 10 * time.Millisecond, nil })
		})
	}
	subnets, err := ec2.NewFromConfig(srv.Config(t)).DescribeSubnets(context.Background(), &ec2.DescribeSubnetsInput{})
	if err != nil {
		t.Fatal(err)
	}
	p := aws.FromConfig(aws.Config{Subnets: []string{sdkaws.ToString(subnets.Subnets[0].SubnetId)}, ConsistencyWait: 5 * time.Second}, ac)
	return p, f, art
}

// TestBehaviourUnderFaults: the behaviour suite again, on moto through a
// third of all calls throttled and every new group invisible to its first
// three describes; the SDK's retryer and the provider's bounded polling
// carry it through.
func TestBehaviourUnderFaults(t *testing.T) {
	srv := moto.Start(t)
	var last *faults
	fleettest.Run(t, func(t *testing.T) fleettest.Harness {
		p, f, art := withFaults(t, srv)
		last = f
		return fleettest.Harness{Provider: p, Artifact: art, Timeout: 30 * time.Second}
	})
	if last.injected["Throttling"] == 0 || last.injected["hidden"] == 0 {
		t.Fatalf("no faults were injected: %v", last.injected)
	}
}

// TestCapacityErrorOnMoto: InsufficientInstanceCapacity on the group's
// create is fleet.ErrCapacity with AWS's reason, and moto is left with no
// group and no launch template.
func TestCapacityErrorOnMoto(t *testing.T) {
	srv := moto.Start(t)
	p, f, art := withFaults(t, srv)
	f.capacity["hello-v042"] = "InsufficientInstanceCapacity"
	_, err := p.CreateGroup(context.Background(), fleet.GroupSpec{Service: "hello", Group: "hello-v042", Version: "v42", Capacity: 2, Artifact: art})
	if !errors.Is(err, fleet.ErrCapacity) || !strings.Contains(err.Error(), "InsufficientInstanceCapacity") {
		t.Fatalf("err = %v", err)
	}
	clean := srv.Config(t)
	groups, err := autoscaling.NewFromConfig(clean).DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{})
	if err != nil || len(groups.AutoScalingGroups) != 0 {
		t.Fatalf("groups left: %v %v", groups, err)
	}
	lts, err := ec2.NewFromConfig(clean).DescribeLaunchTemplates(context.Background(), &ec2.DescribeLaunchTemplatesInput{})
	if err != nil || len(lts.LaunchTemplates) != 0 {
		t.Fatalf("launch templates left: %d %v", len(lts.LaunchTemplates), err)
	}
}

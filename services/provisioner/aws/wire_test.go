package aws_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/events"
	specpkg "github.com/redblack/redblack/shared/spec"
)

// wire stubs the SDK's HTTP client: every request's form is recorded and
// answered by the responder for its Action, with AWS's documented XML.
type wire struct {
	mu      sync.Mutex
	calls   []url.Values
	respond map[string]func(n int) (int, string) // by Action; n counts its calls
	counts  map[string]int
}

func (w *wire) do(r *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(b))
	w.mu.Lock()
	w.calls = append(w.calls, form)
	action := form.Get("Action")
	w.counts[action]++
	n := w.counts[action]
	f := w.respond[action]
	w.mu.Unlock()
	status, body := 200, ""
	if f != nil {
		status, body = f(n)
	} else {
		status, body = 500, "<ErrorResponse><Error><Code>Unexpected</Code><Message>no stub for "+action+"</Message></Error></ErrorResponse>"
	}
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"text/xml"}}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

func (w *wire) call(action string) url.Values {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.calls {
		if c.Get("Action") == action {
			return c
		}
	}
	return nil
}

func newWire(t *testing.T, respond map[string]func(n int) (int, string)) (*wire, *aws.Provider) {
	w := &wire{respond: respond, counts: map[string]int{}}
	ac := sdkaws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: sdkaws.String("https://aws.test"),
		HTTPClient:   smithyhttp.ClientDoFunc(w.do),
		Retryer: func() sdkaws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 5
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
			})
		},
	}
	return w, aws.FromConfig(aws.Config{Subnets: []string{"subnet-a", "subnet-b"}, SecurityGroups: []string{"sg-1"}, ConsistencyWait: time.Second,
		TargetGroup: func(_ context.Context, group string) (string, error) {
			return "arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/" + group + "/1", nil
		}}, ac)
}

const (
	asNS  = `xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"`
	ec2NS = `xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"`
)

func ok(body string) func(int) (int, string) { return func(int) (int, string) { return 200, body } }

// ec2Error is EC2's error document (unlike the other query services').
func ec2Error(status int, code, msg string) (int, string) {
	return status, `<Response><Errors><Error><Code>` + code + `</Code><Message>` + msg + `</Message></Error></Errors><RequestID>req-1</RequestID></Response>`
}

func awsError(status int, code, msg string) (int, string) {
	return status, `<ErrorResponse><Error><Type>Sender</Type><Code>` + code + `</Code><Message>` + msg + `</Message></Error><RequestId>req-1</RequestId></ErrorResponse>`
}

var (
	noGroups  = `<DescribeAutoScalingGroupsResponse ` + asNS + `><DescribeAutoScalingGroupsResult><AutoScalingGroups/></DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>`
	oneGroup  = `<DescribeAutoScalingGroupsResponse ` + asNS + `><DescribeAutoScalingGroupsResult><AutoScalingGroups><member><AutoScalingGroupName>hello-v007</AutoScalingGroupName><DesiredCapacity>2</DesiredCapacity><MinSize>2</MinSize><MaxSize>2</MaxSize><CreatedTime>2026-11-26T10:00:00Z</CreatedTime><Instances><member><InstanceId>i-0a</InstanceId><LifecycleState>InService</LifecycleState><HealthStatus>Healthy</HealthStatus></member><member><InstanceId>i-0b</InstanceId><LifecycleState>Pending</LifecycleState><HealthStatus>Healthy</HealthStatus></member></Instances><Tags><member><Key>redblack:service</Key><Value>hello</Value></member><member><Key>redblack:version</Key><Value>v7</Value></member></Tags></member></AutoScalingGroups></DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>`
	createdLT = `<CreateLaunchTemplateResponse ` + ec2NS + `><requestId>r</requestId><launchTemplate><launchTemplateId>lt-0123</launchTemplateId><launchTemplateName>redblack-hello-v007</launchTemplateName><latestVersionNumber>1</latestVersionNumber><defaultVersionNumber>1</defaultVersionNumber></launchTemplate></CreateLaunchTemplateResponse>`
	createdAS = `<CreateAutoScalingGroupResponse ` + asNS + `><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></CreateAutoScalingGroupResponse>`
	instances = `<DescribeInstancesResponse ` + ec2NS + `><requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>i-0a</instanceId><privateIpAddress>10.0.1.5</privateIpAddress><launchTime>2026-11-26T10:00:05Z</launchTime></item><item><instanceId>i-0b</instanceId><privateIpAddress>10.0.2.6</privateIpAddress></item></instancesSet></item></reservationSet></DescribeInstancesResponse>`
	noLTs     = `<DescribeLaunchTemplatesResponse ` + ec2NS + `><requestId>r</requestId><launchTemplates/></DescribeLaunchTemplatesResponse>`
	deletedLT = `<DeleteLaunchTemplateResponse ` + ec2NS + `><requestId>r</requestId><launchTemplate><launchTemplateId>lt-0123</launchTemplateId></launchTemplate></DeleteLaunchTemplateResponse>`
)

// createStubs answer a create: no group yet, the template and group made,
// then the group described with its instances.
func createStubs() map[string]func(int) (int, string) {
	return map[string]func(int) (int, string){
		"DescribeAutoScalingGroups": func(n int) (int, string) {
			if n == 1 {
				return 200, noGroups
			}
			return 200, oneGroup
		},
		"CreateLaunchTemplate":   ok(createdLT),
		"CreateAutoScalingGroup": ok(createdAS),
		"DescribeInstances":      ok(instances),
	}
}

func spec() fleet.GroupSpec {
	return fleet.GroupSpec{Service: "hello", Group: "hello-v007", Version: "v7", Role: "production", Capacity: 2, Release: "r-7",
		Artifact: events.Artifact{AMI: "ami-0abc", InstanceType: "c7g.large", UserData: "#!/bin/sh\necho hi"}}
}

// TestCreateSerialisesTheLaunchTemplateAndGroup: the form fields AWS gets
// for the launch template and the Auto Scaling group, and the group read
// back with private IPs and states.
func TestCreateSerialisesTheLaunchTemplateAndGroup(t *testing.T) {
	w, p := newWire(t, createStubs())
	g, err := p.CreateGroup(context.Background(), spec())
	if err != nil {
		t.Fatal(err)
	}
	lt := w.call("CreateLaunchTemplate")
	for k, v := range map[string]string{
		"LaunchTemplateName":                   "redblack-hello-v007",
		"LaunchTemplateData.ImageId":           "ami-0abc",
		"LaunchTemplateData.InstanceType":      "c7g.large",
		"LaunchTemplateData.UserData":          "IyEvYmluL3NoCmVjaG8gaGk=",
		"LaunchTemplateData.SecurityGroupId.1": "sg-1",
	} {
		if got := lt.Get(k); got != v {
			t.Errorf("CreateLaunchTemplate %s = %q, want %q", k, got, v)
		}
	}
	as := w.call("CreateAutoScalingGroup")
	for k, v := range map[string]string{
		"AutoScalingGroupName":              "hello-v007",
		"LaunchTemplate.LaunchTemplateName": "redblack-hello-v007",
		"LaunchTemplate.Version":            "1",
		"MinSize":                           "2",
		"MaxSize":                           "2",
		"DesiredCapacity":                   "2",
		"VPCZoneIdentifier":                 "subnet-a,subnet-b",
		"Tags.member.1.Key":                 "redblack:service",
		"Tags.member.1.Value":               "hello",
		"Tags.member.1.PropagateAtLaunch":   "true",
		"Tags.member.2.Key":                 "redblack:group",
		"Tags.member.3.Value":               "v7",
	} {
		if got := as.Get(k); got != v {
			t.Errorf("CreateAutoScalingGroup %s = %q, want %q", k, got, v)
		}
	}
	if len(g.Instances) != 2 || g.Instances[0].Address != "10.0.1.5:8080" || g.Instances[0].State != "up" || g.Instances[1].State != "starting" || g.Spec.Version != "v7" {
		t.Fatalf("group %+v", g)
	}
}

// TestCapacityErrorLeavesNothingBehind: LimitExceeded from Auto Scaling is
// fleet.ErrCapacity with AWS's reason, and the launch template just made is
// deleted.
func TestCapacityErrorLeavesNothingBehind(t *testing.T) {
	w, p := newWire(t, map[string]func(int) (int, string){
		"DescribeAutoScalingGroups": ok(noGroups),
		"CreateLaunchTemplate":      ok(createdLT),
		"CreateAutoScalingGroup": func(int) (int, string) {
			return awsError(400, "LimitExceeded", "You have reached the limit of Auto Scaling groups")
		},
		"DeleteLaunchTemplate": ok(deletedLT),
	})
	_, err := p.CreateGroup(context.Background(), spec())
	if !errors.Is(err, fleet.ErrCapacity) || !strings.Contains(err.Error(), "limit of Auto Scaling groups") {
		t.Fatalf("err = %v", err)
	}
	if d := w.call("DeleteLaunchTemplate"); d == nil || d.Get("LaunchTemplateName") != "redblack-hello-v007" {
		t.Fatalf("launch template left behind: %v", d)
	}
	if _, err := p.DescribeGroup(context.Background(), "hello-v007"); !errors.Is(err, fleet.ErrGroupNotFound) {
		t.Fatalf("describe after: %v", err)
	}
	w2, p2 := newWire(t, map[string]func(int) (int, string){
		"DescribeAutoScalingGroups": ok(noGroups),
		"CreateLaunchTemplate": func(int) (int, string) {
			return ec2Error(400, "InvalidAMIID.NotFound", "The image id '[ami-0abc]' does not exist")
		},
	})
	if _, err := p2.CreateGroup(context.Background(), spec()); !errors.Is(err, fleet.ErrBadArtifact) {
		t.Fatalf("bad AMI: %v", err)
	}
	if w2.call("CreateAutoScalingGroup") != nil {
		t.Fatal("a group was created from a bad AMI")
	}
}

// TestThrottlingIsRetried: two Throttling answers, then the real one; the
// SDK's retryer makes the call succeed on the third attempt.
func TestThrottlingIsRetried(t *testing.T) {
	w, p := newWire(t, map[string]func(int) (int, string){
		"DescribeAutoScalingGroups": func(n int) (int, string) {
			if n <= 2 {
				return awsError(400, "Throttling", "Rate exceeded")
			}
			return 200, oneGroup
		},
		"DescribeInstances":       ok(instances),
		"DescribeLaunchTemplates": ok(noLTs),
	})
	g, err := p.DescribeGroup(context.Background(), "hello-v007")
	if err != nil || g.Spec.Group != "hello-v007" {
		t.Fatalf("%+v %v", g, err)
	}
	if n := w.counts["DescribeAutoScalingGroups"]; n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
}

// TestSpecAWSBlock: the service spec's aws block places the group: its
// subnets, security groups and instance type win over the provider's.
func TestSpecAWSBlock(t *testing.T) {
	w, p := newWire(t, createStubs())
	s := spec()
	s.Artifact.InstanceType = ""
	s.AWS = specpkg.AWS{Subnets: []string{"subnet-z"}, SecurityGroups: []string{"sg-9"}, InstanceType: "m7g.medium"}
	if _, err := p.CreateGroup(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if got := w.call("CreateAutoScalingGroup").Get("VPCZoneIdentifier"); got != "subnet-z" {
		t.Errorf("subnets %q", got)
	}
	lt := w.call("CreateLaunchTemplate")
	if lt.Get("LaunchTemplateData.SecurityGroupId.1") != "sg-9" || lt.Get("LaunchTemplateData.InstanceType") != "m7g.medium" {
		t.Errorf("launch template %v", lt)
	}
}

var (
	statefulGroup = `<DescribeAutoScalingGroupsResponse ` + asNS + `><DescribeAutoScalingGroupsResult><AutoScalingGroups><member><AutoScalingGroupName>store-v002</AutoScalingGroupName><DesiredCapacity>1</DesiredCapacity><MinSize>0</MinSize><MaxSize>3</MaxSize><CreatedTime>2026-11-26T10:00:00Z</CreatedTime><Instances><member><InstanceId>i-0a</InstanceId><LifecycleState>InService</LifecycleState><HealthStatus>Healthy</HealthStatus></member></Instances><Tags><member><Key>redblack:service</Key><Value>store</Value></member><member><Key>redblack:slots</Key><Value>1</Value></member><member><Key>redblack:slot-count</Key><Value>3</Value></member></Tags></member></AutoScalingGroups></DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>`
	slotInstance  = `<DescribeInstancesResponse ` + ec2NS + `><requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>i-0a</instanceId><privateIpAddress>10.0.1.5</privateIpAddress><placement><availabilityZone>us-east-1a</availabilityZone></placement><tagSet><item><key>redblack:slot</key><value>store-1</value></item></tagSet></item></instancesSet></item></reservationSet></DescribeInstancesResponse>`
)

func slotVolume(state string) string {
	return `<DescribeVolumesResponse ` + ec2NS + `><requestId>r</requestId><volumeSet><item><volumeId>vol-1</volumeId><availabilityZone>us-east-1a</availabilityZone><status>` + state + `</status><attachmentSet/></item></volumeSet></DescribeVolumesResponse>`
}

// TestKeepWaitsForTheVolume: what moto does not do. A slot's volume still
// being made is not attached; AWS's VolumeInUse (another instance attached
// it first) is a wait, not an error; the instance is not up meanwhile; and
// the attach is serialized with the slot's volume, the instance and the
// device.
func TestKeepWaitsForTheVolume(t *testing.T) {
	volumeState := "creating"
	w, p := newWire(t, map[string]func(int) (int, string){
		"DescribeAutoScalingGroups": ok(statefulGroup),
		"DescribeInstances":         ok(slotInstance),
		"DescribeVolumes":           func(int) (int, string) { return 200, slotVolume(volumeState) },
		"AttachVolume": func(int) (int, string) {
			return ec2Error(400, "VolumeInUse", "vol-1 is already attached to an instance")
		},
	})
	ctx := context.Background()
	if err := p.Keep(ctx); err != nil {
		t.Fatalf("keep while the volume is made: %v", err)
	}
	if w.call("AttachVolume") != nil {
		t.Fatal("attached a volume still being made")
	}
	volumeState = "available"
	if err := p.Keep(ctx); err != nil {
		t.Fatalf("keep on VolumeInUse: %v", err)
	}
	at := w.call("AttachVolume")
	for k, v := range map[string]string{"VolumeId": "vol-1", "InstanceId": "i-0a", "Device": "/dev/xvdf"} {
		if got := at.Get(k); got != v {
			t.Errorf("AttachVolume %s = %q, want %q", k, got, v)
		}
	}
	vols := w.call("DescribeVolumes")
	if vols.Get("Filter.1.Name") != "tag:redblack:service" || vols.Get("Filter.1.Value.1") != "store" || vols.Get("Filter.2.Name") != "tag:redblack:slot" || vols.Get("Filter.2.Value.1") != "store-1" {
		t.Errorf("DescribeVolumes filters: %v", vols)
	}
	g, err := p.DescribeGroup(ctx, "store-v002")
	if err != nil {
		t.Fatal(err)
	}
	if i := g.Instances[0]; i.Slot != "store-1" || i.SlotCount != 3 || i.State != "starting" || !g.Spec.Stateful || fmt.Sprint(g.Spec.Slots) != "[1]" {
		t.Fatalf("the group without its volume: %+v %+v", g.Spec, i)
	}
}

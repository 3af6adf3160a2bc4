// Package awsfake is an in-memory AWS for the aws provider's tests: the
// Auto Scaling and EC2 calls the provider makes, answered in AWS's query
// protocol XML through the SDK's own HTTP seam (smithyhttp.ClientDoFunc),
// with faults to inject — throttling, delayed consistency, capacity errors.
// The provider behaviour suite runs against it and against moto, which keeps
// the fake honest.
package awsfake

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Faults to inject.
type Faults struct {
	// ThrottleEvery: every n-th call answers Throttling (0: never).
	ThrottleEvery int
	// HideNew: a new group is missing from its first n describes.
	HideNew int
	// Capacity: creating a group of this name fails with this error code
	// (InsufficientInstanceCapacity, LimitExceeded).
	Capacity map[string]string
}

type instance struct {
	id, ip   string
	launched time.Time
}

type group struct {
	name, template, version string
	desired                 int
	tags                    map[string]string
	tgs                     []string
	instances               []*instance
	created                 time.Time
	hidden                  int
}

// AWS is the fake.
type AWS struct {
	Faults Faults

	mu        sync.Mutex
	calls     int
	seq       int
	groups    map[string]*group
	templates map[string]string // name → id
	// Injected counts what was injected, by kind.
	Injected map[string]int
}

// New returns an empty fake.
func New(f Faults) *AWS {
	return &AWS{Faults: f, groups: map[string]*group{}, templates: map[string]string{}, Injected: map[string]int{}}
}

// Config is an SDK configuration that sends every call to the fake, with
// the standard retryer (no backoff delay).
func (a *AWS) Config() sdkaws.Config {
	return sdkaws.Config{
		Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: sdkaws.String("https://fake.aws"), HTTPClient: smithyhttp.ClientDoFunc(a.do),
		Retryer: func() sdkaws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 8
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			})
		},
	}
}

const (
	asNS  = `xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"`
	ec2NS = `xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"`
)

func (a *AWS) do(r *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(b))
	ec2 := form.Get("Version") == "2016-11-15"
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	status, body := 200, ""
	if a.Faults.ThrottleEvery > 0 && a.calls%a.Faults.ThrottleEvery == 0 {
		a.Injected["Throttling"]++
		status, body = fault(ec2, "Throttling", "Rate exceeded")
	} else {
		status, body = a.action(form, ec2)
	}
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"text/xml"}}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

// fault is AWS's error document: EC2's own, or the other query services'.
func fault(ec2 bool, code, msg string) (int, string) {
	msg = html.EscapeString(msg)
	if ec2 {
		return 400, `<Response><Errors><Error><Code>` + code + `</Code><Message>` + msg + `</Message></Error></Errors><RequestID>fake</RequestID></Response>`
	}
	return 400, `<ErrorResponse><Error><Type>Sender</Type><Code>` + code + `</Code><Message>` + msg + `</Message></Error><RequestId>fake</RequestId></ErrorResponse>`
}

func (a *AWS) next(prefix string) string {
	a.seq++
	return fmt.Sprintf("%s-%08x", prefix, a.seq)
}

func (a *AWS) launch(g *group, n int) {
	for len(g.instances) < n {
		a.seq++
		g.instances = append(g.instances, &instance{id: fmt.Sprintf("i-%08x", a.seq), ip: fmt.Sprintf("10.0.%d.%d", a.seq/250, a.seq%250+2), launched: time.Now().UTC()})
	}
	if len(g.instances) > n {
		g.instances = g.instances[:n]
	}
}

func (a *AWS) action(f url.Values, ec2 bool) (int, string) {
	ok := func(name, inner string) (int, string) {
		if ec2 {
			return 200, `<` + name + `Response ` + ec2NS + `><requestId>fake</requestId>` + inner + `</` + name + `Response>`
		}
		return 200, `<` + name + `Response ` + asNS + `><` + name + `Result>` + inner + `</` + name + `Result><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></` + name + `Response>`
	}
	switch action := f.Get("Action"); action {
	case "CreateLaunchTemplate":
		name := f.Get("LaunchTemplateName")
		if _, ok := a.templates[name]; ok {
			return fault(true, "InvalidLaunchTemplateName.AlreadyExistsException", "exists: "+name)
		}
		if !strings.HasPrefix(f.Get("LaunchTemplateData.ImageId"), "ami-") {
			return fault(true, "InvalidAMIID.Malformed", "bad image id")
		}
		id := a.next("lt")
		a.templates[name] = id
		return ok(action, `<launchTemplate><launchTemplateId>`+id+`</launchTemplateId><launchTemplateName>`+name+`</launchTemplateName><latestVersionNumber>1</latestVersionNumber><defaultVersionNumber>1</defaultVersionNumber></launchTemplate>`)
	case "DescribeLaunchTemplates":
		var items strings.Builder
		for name, id := range a.templates {
			if want := f.Get("Filter.1.Value.1"); want == "" || want == name {
				items.WriteString(`<item><launchTemplateId>` + id + `</launchTemplateId><launchTemplateName>` + name + `</launchTemplateName></item>`)
			}
		}
		return ok(action, `<launchTemplates>`+items.String()+`</launchTemplates>`)
	case "DeleteLaunchTemplate":
		for name, id := range a.templates {
			if id == f.Get("LaunchTemplateId") || name == f.Get("LaunchTemplateName") {
				delete(a.templates, name)
				return ok(action, `<launchTemplate><launchTemplateId>`+id+`</launchTemplateId></launchTemplate>`)
			}
		}
		return fault(true, "InvalidLaunchTemplateId.NotFound", "no such launch template")
	case "CreateAutoScalingGroup":
		name := f.Get("AutoScalingGroupName")
		if _, exists := a.groups[name]; exists {
			return fault(false, "AlreadyExists", "group exists: "+name)
		}
		if code := a.Faults.Capacity[name]; code != "" {
			a.Injected[code]++
			return fault(false, code, "injected "+code)
		}
		lt := f.Get("LaunchTemplate.LaunchTemplateName")
		if _, ok := a.templates[lt]; !ok && lt != "" {
			return fault(false, "ValidationError", "no launch template "+lt)
		}
		n, _ := strconv.Atoi(f.Get("DesiredCapacity"))
		g := &group{name: name, template: lt, version: f.Get("LaunchTemplate.Version"), desired: n, tags: map[string]string{}, created: time.Now().UTC(), hidden: a.Faults.HideNew}
		for i := 1; f.Get(fmt.Sprintf("Tags.member.%d.Key", i)) != ""; i++ {
			g.tags[f.Get(fmt.Sprintf("Tags.member.%d.Key", i))] = f.Get(fmt.Sprintf("Tags.member.%d.Value", i))
		}
		for i := 1; f.Get(fmt.Sprintf("TargetGroupARNs.member.%d", i)) != ""; i++ {
			g.tgs = append(g.tgs, f.Get(fmt.Sprintf("TargetGroupARNs.member.%d", i)))
		}
		a.launch(g, n)
		a.groups[name] = g
		return ok(action, "")
	case "DescribeAutoScalingGroups":
		var names []string
		for i := 1; f.Get(fmt.Sprintf("AutoScalingGroupNames.member.%d", i)) != ""; i++ {
			names = append(names, f.Get(fmt.Sprintf("AutoScalingGroupNames.member.%d", i)))
		}
		if len(names) == 0 {
			for n := range a.groups {
				names = append(names, n)
			}
			sort.Strings(names)
		}
		var out strings.Builder
		for _, n := range names {
			g, exists := a.groups[n]
			if !exists {
				continue
			}
			if g.hidden > 0 {
				g.hidden--
				a.Injected["hidden"]++
				continue
			}
			out.WriteString(g.xml())
		}
		return ok(action, `<AutoScalingGroups>`+out.String()+`</AutoScalingGroups>`)
	case "UpdateAutoScalingGroup":
		g, exists := a.groups[f.Get("AutoScalingGroupName")]
		if !exists {
			return fault(false, "ValidationError", "AutoScalingGroup name not found")
		}
		n, _ := strconv.Atoi(f.Get("DesiredCapacity"))
		g.desired = n
		a.launch(g, n)
		return ok(action, "")
	case "DeleteAutoScalingGroup":
		if _, exists := a.groups[f.Get("AutoScalingGroupName")]; !exists {
			return fault(false, "ValidationError", "AutoScalingGroup name not found")
		}
		delete(a.groups, f.Get("AutoScalingGroupName"))
		return ok(action, "")
	case "DetachLoadBalancerTargetGroups":
		if g, exists := a.groups[f.Get("AutoScalingGroupName")]; exists {
			g.tgs = nil
		}
		return ok(action, "")
	case "DescribeInstances":
		var out strings.Builder
		for i := 1; f.Get(fmt.Sprintf("InstanceId.%d", i)) != ""; i++ {
			id := f.Get(fmt.Sprintf("InstanceId.%d", i))
			for _, g := range a.groups {
				for _, in := range g.instances {
					if in.id == id {
						out.WriteString(`<item><instanceId>` + id + `</instanceId><privateIpAddress>` + in.ip + `</privateIpAddress><launchTime>` + in.launched.Format(time.RFC3339) + `</launchTime></item>`)
					}
				}
			}
		}
		return ok(action, `<reservationSet><item><reservationId>r-fake</reservationId><instancesSet>`+out.String()+`</instancesSet></item></reservationSet>`)
	case "TerminateInstances":
		id := f.Get("InstanceId.1")
		for _, g := range a.groups {
			for k, in := range g.instances {
				if in.id == id {
					g.instances = append(g.instances[:k], g.instances[k+1:]...)
					a.launch(g, g.desired) // the group replaces it
					return ok(action, `<instancesSet><item><instanceId>`+id+`</instanceId></item></instancesSet>`)
				}
			}
		}
		return fault(true, "InvalidInstanceID.NotFound", "no such instance "+id)
	default:
		return fault(ec2, "InvalidAction", "the fake does not know "+action)
	}
}

func (g *group) xml() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<member><AutoScalingGroupName>%s</AutoScalingGroupName><DesiredCapacity>%d</DesiredCapacity><MinSize>%d</MinSize><MaxSize>%d</MaxSize><CreatedTime>%s</CreatedTime>`,
		g.name, g.desired, g.desired, g.desired, g.created.Format(time.RFC3339))
	b.WriteString(`<Instances>`)
	for _, in := range g.instances {
		fmt.Fprintf(&b, `<member><InstanceId>%s</InstanceId><LifecycleState>InService</LifecycleState><HealthStatus>Healthy</HealthStatus></member>`, in.id)
	}
	b.WriteString(`</Instances><Tags>`)
	keys := make([]string, 0, len(g.tags))
	for k := range g.tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, `<member><Key>%s</Key><Value>%s</Value></member>`, html.EscapeString(k), html.EscapeString(g.tags[k]))
	}
	b.WriteString(`</Tags><TargetGroupARNs>`)
	for _, tg := range g.tgs {
		fmt.Fprintf(&b, `<member>%s</member>`, tg)
	}
	b.WriteString(`</TargetGroupARNs></member>`)
	return b.String()
}

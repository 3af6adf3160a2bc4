// Package aws is the aws provider: a server group is an Auto Scaling group
// named like the group, launched from a launch template version the
// provider creates from the release's artifact (an AMI, with an optional
// instance type and user data) or from an existing launch template. Groups
// carry the tags redblack:service, redblack:group, redblack:version and
// redblack:role and redblack:release; an instance is killed with EC2 TerminateInstances and the
// group replaces it, as Chaos Monkey does on AWS.
package aws

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/spec"
)

// Tags on every Auto Scaling group (and its instances) the provider makes.
const (
	TagService = "redblack:service"
	TagGroup   = "redblack:group"
	TagVersion = "redblack:version"
	TagRole    = "redblack:role"
	TagRelease = "redblack:release"
)

// Config configures the provider.
type Config struct {
	// Subnets are the Auto Scaling groups' VPC subnets.
	Subnets []string
	// SecurityGroups go into the launch templates the provider creates.
	SecurityGroups []string
	// InstanceType is the default when the artifact names none
	// (default t3.micro).
	InstanceType string
	// Port is the instances' service port in their addresses (default 8080).
	Port int
	// MaxAttempts bounds the SDK's retries of throttled and transient
	// calls (default 8).
	MaxAttempts int
	// ConsistencyWait bounds the polling for a describe to see what was just
	// created (default 30 s).
	ConsistencyWait time.Duration
	// TargetGroup, when set, gives the ELBv2 target group a new Auto Scaling
	// group is attached to (the edge makes one per server group).
	TargetGroup func(ctx context.Context, group string) (arn string, err error)
	// ReleaseTargetGroup, when set, deletes a destroyed group's target
	// group; it refuses one that still has weight.
	ReleaseTargetGroup func(ctx context.Context, service, group string) error
	// Drain is how long a group detached from its target groups is left to
	// finish its requests before it is deleted (the target groups'
	// deregistration delay; 0: none).
	Drain time.Duration
	// VolumeSize is the size in GiB of the EBS volume the provider makes
	// for a stateful group's slot (default 10), and VolumeDevice where it
	// attaches it (default /dev/xvdf).
	VolumeSize   int
	VolumeDevice string
}

func (c *Config) defaults() {
	if c.InstanceType == "" {
		c.InstanceType = "t3.micro"
	}
	if c.Port == 0 {
		c.Port = 8080
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	if c.ConsistencyWait == 0 {
		c.ConsistencyWait = 30 * time.Second
	}
	if c.VolumeSize == 0 {
		c.VolumeSize = 10
	}
	if c.VolumeDevice == "" {
		c.VolumeDevice = "/dev/xvdf"
	}
}

// Provider implements fleet.Provider on Auto Scaling and EC2.
type Provider struct {
	cfg Config
	as  *autoscaling.Client
	ec2 *ec2.Client
	elb *elb.Client
}

// New builds the provider from the standard AWS configuration chain
// (credentials, region, AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>),
// with the SDK's standard retryer.
func New(ctx context.Context, cfg Config, opts ...func(*config.LoadOptions) error) (*Provider, error) {
	cfg.defaults()
	opts = append([]func(*config.LoadOptions) error{config.WithRetryer(func() sdkaws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = cfg.MaxAttempts })
	})}, opts...)
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws: load config: %w", err)
	}
	return FromConfig(cfg, ac), nil
}

// FromConfig builds the provider on an SDK configuration.
func FromConfig(cfg Config, ac sdkaws.Config) *Provider {
	cfg.defaults()
	return &Provider{cfg: cfg, as: autoscaling.NewFromConfig(ac), ec2: ec2.NewFromConfig(ac), elb: elb.NewFromConfig(ac)}
}

var _ fleet.Provider = (*Provider)(nil)

// codes of AWS errors that mean there is no capacity for the group.
var capacityCodes = map[string]bool{
	"InsufficientInstanceCapacity": true, "LimitExceeded": true, "InstanceLimitExceeded": true,
	"VcpuLimitExceeded": true, "InsufficientCapacity": true,
}

// classify maps AWS error codes onto the seam's errors.
func classify(err error) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch code := ae.ErrorCode(); {
	case capacityCodes[code]:
		return fmt.Errorf("%w: %s: %s", fleet.ErrCapacity, code, ae.ErrorMessage())
	case strings.HasPrefix(code, "InvalidAMIID"), code == "InvalidLaunchTemplateName.NotFoundException", code == "InvalidLaunchTemplateId.NotFound":
		return fmt.Errorf("%w: %s: %s", fleet.ErrBadArtifact, code, ae.ErrorMessage())
	case code == "InvalidInstanceID.NotFound":
		return fmt.Errorf("%w: %s", fleet.ErrInstanceNotFound, ae.ErrorMessage())
	}
	return err
}

// templateName is the launch template the provider creates for a group.
func templateName(group string) string { return "redblack-" + group }

// CreateGroup creates the launch template (unless the artifact names one)
// and the Auto Scaling group; a group that exists already is described and
// compared: the same service and version is returned as it is, another is an
// error. A failure leaves no template or group behind.
func (p *Provider) CreateGroup(ctx context.Context, s fleet.GroupSpec) (fleet.Group, error) {
	if g, err := p.DescribeGroup(ctx, s.Group); err == nil {
		if g.Spec.Service != s.Service || g.Spec.Version != s.Version {
			return g, fmt.Errorf("aws: %s exists already with service %q version %q, not %q %q", s.Group, g.Spec.Service, g.Spec.Version, s.Service, s.Version)
		}
		return g, nil
	} else if !errors.Is(err, fleet.ErrGroupNotFound) {
		return fleet.Group{}, err
	}
	a := s.Artifact
	lt := &astypes.LaunchTemplateSpecification{}
	created := ""
	switch {
	case a.LaunchTemplate != "":
		lt.LaunchTemplateName = sdkaws.String(a.LaunchTemplate)
		lt.Version = sdkaws.String(a.LaunchTemplateVersion)
		if a.LaunchTemplateVersion == "" {
			lt.Version = sdkaws.String("$Default")
		}
	case a.AMI != "":
		data := &ec2types.RequestLaunchTemplateData{
			ImageId:          sdkaws.String(a.AMI),
			InstanceType:     ec2types.InstanceType(first(s.AWS.InstanceType, p.cfg.InstanceType)),
			SecurityGroupIds: p.cfg.SecurityGroups,
		}
		if len(s.AWS.SecurityGroups) > 0 {
			data.SecurityGroupIds = s.AWS.SecurityGroups
		}
		if a.InstanceType != "" {
			data.InstanceType = ec2types.InstanceType(a.InstanceType)
		}
		if a.UserData != "" {
			data.UserData = sdkaws.String(base64.StdEncoding.EncodeToString([]byte(a.UserData)))
		}
		out, err := p.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: sdkaws.String(templateName(s.Group)), LaunchTemplateData: data,
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: []ec2types.Tag{
				{Key: sdkaws.String(TagService), Value: sdkaws.String(s.Service)}, {Key: sdkaws.String(TagGroup), Value: sdkaws.String(s.Group)},
			}}},
		})
		if err != nil && !isCode(err, "InvalidLaunchTemplateName.AlreadyExistsException") {
			return fleet.Group{}, fmt.Errorf("aws: create launch template of %s: %w", s.Group, classify(err))
		}
		created = templateName(s.Group)
		lt.LaunchTemplateName = sdkaws.String(created)
		lt.Version = sdkaws.String("$Latest")
		if out != nil && out.LaunchTemplate != nil && out.LaunchTemplate.LatestVersionNumber != nil {
			lt.Version = sdkaws.String(strconv.FormatInt(*out.LaunchTemplate.LatestVersionNumber, 10))
		}
	default:
		return fleet.Group{}, fmt.Errorf("%w: the aws provider needs an AMI or a launch template", fleet.ErrBadArtifact)
	}
	subnets := p.cfg.Subnets
	if len(s.AWS.Subnets) > 0 {
		subnets = s.AWS.Subnets
	}
	var tgs []string
	if p.cfg.TargetGroup != nil {
		arn, err := p.cfg.TargetGroup(ctx, s.Group)
		if err != nil {
			return fleet.Group{}, fmt.Errorf("aws: target group of %s: %w", s.Group, err)
		}
		tgs = []string{arn}
	}
	n := int32(s.Capacity)
	lo, hi := n, n
	if a := s.Autoscale; a != nil {
		lo, hi = int32(a.Min), int32(a.Max)
		n = min(max(n, lo), hi)
	}
	tag := func(k, v string) astypes.Tag {
		return astypes.Tag{Key: sdkaws.String(k), Value: sdkaws.String(v), PropagateAtLaunch: sdkaws.Bool(true)}
	}
	tags := []astypes.Tag{tag(TagService, s.Service), tag(TagGroup, s.Group), tag(TagVersion, s.Version), tag(TagRole, s.Role), tag(TagRelease, s.Release)}
	if s.Stateful {
		// its slots' volumes are in one zone: one subnet; it shrinks only by
		// the termination of a chosen slot's instance (min 0)
		subnets = subnets[:min(1, len(subnets))]
		n, lo, hi = int32(len(s.Slots)), 0, int32(max(s.SlotCount, len(s.Slots)))
		tags = append(tags, groupTag(s.Group, TagSlots, formatSlots(s.Slots)), groupTag(s.Group, TagSlotCount, strconv.Itoa(s.SlotCount)))
	}
	_, err := p.as.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: sdkaws.String(s.Group),
		LaunchTemplate:       lt,
		MinSize:              sdkaws.Int32(lo), MaxSize: sdkaws.Int32(hi), DesiredCapacity: sdkaws.Int32(n),
		VPCZoneIdentifier: sdkaws.String(strings.Join(subnets, ",")),
		TargetGroupARNs:   tgs,
		Tags:              tags,
	})
	if err != nil && !isCode(err, "AlreadyExists") {
		if created != "" { // leave nothing half-made
			_, _ = p.ec2.DeleteLaunchTemplate(context.WithoutCancel(ctx), &ec2.DeleteLaunchTemplateInput{LaunchTemplateName: sdkaws.String(created)})
		}
		return fleet.Group{}, fmt.Errorf("aws: create auto scaling group %s: %w", s.Group, classify(err))
	}
	if s.Autoscale != nil {
		if err := p.targetTracking(ctx, s.Group, *s.Autoscale, tgs); err != nil {
			return fleet.Group{}, err
		}
	}
	// a describe right after the create can miss it: poll, bounded
	deadline := time.Now().Add(p.cfg.ConsistencyWait)
	for {
		g, err := p.DescribeGroup(ctx, s.Group)
		if !errors.Is(err, fleet.ErrGroupNotFound) || time.Now().After(deadline) {
			return g, err
		}
		select {
		case <-ctx.Done():
			return g, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TargetPolicy is the name of the target-tracking policy the provider puts
// on an autoscaled group.
const TargetPolicy = "redblack-target"

// targetTracking puts the group's target-tracking policy: the average CPU
// of its instances, or the ALB's requests per target (per minute, as that
// metric counts them: the spec's per-second target × 60), which needs the
// group's target group on a load balancer. The instances' warm-up is the
// scale-up cooldown.
func (p *Provider) targetTracking(ctx context.Context, group string, a spec.Autoscale, tgs []string) error {
	metric := &astypes.PredefinedMetricSpecification{PredefinedMetricType: astypes.MetricTypeASGAverageCPUUtilization}
	target := a.TargetCPU
	if a.TargetRequestsPerInstance > 0 {
		if len(tgs) == 0 {
			return fmt.Errorf("aws: %s: autoscale on requests per instance needs the group's target group (--aws-listener)", group)
		}
		label, err := p.resourceLabel(ctx, tgs[0])
		if err != nil {
			return fmt.Errorf("aws: %s: %w", group, err)
		}
		metric = &astypes.PredefinedMetricSpecification{PredefinedMetricType: astypes.MetricTypeALBRequestCountPerTarget, ResourceLabel: sdkaws.String(label)}
		target = a.TargetRequestsPerInstance * 60
	}
	_, err := p.as.PutScalingPolicy(ctx, &autoscaling.PutScalingPolicyInput{
		AutoScalingGroupName:        sdkaws.String(group),
		PolicyName:                  sdkaws.String(TargetPolicy),
		PolicyType:                  sdkaws.String("TargetTrackingScaling"),
		EstimatedInstanceWarmup:     sdkaws.Int32(int32(a.ScaleUpCooldown.D().Seconds())),
		TargetTrackingConfiguration: &astypes.TargetTrackingConfiguration{PredefinedMetricSpecification: metric, TargetValue: sdkaws.Float64(target)},
	})
	if err != nil {
		return fmt.Errorf("aws: target tracking of %s: %w", group, classify(err))
	}
	return nil
}

// resourceLabel is ALBRequestCountPerTarget's label of a target group:
// app/<lb-name>/<lb-id>/targetgroup/<tg-name>/<tg-id>.
func (p *Provider) resourceLabel(ctx context.Context, tgARN string) (string, error) {
	out, err := p.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{TargetGroupArns: []string{tgARN}})
	if err != nil {
		return "", fmt.Errorf("describe target group: %w", classify(err))
	}
	if len(out.TargetGroups) == 0 || len(out.TargetGroups[0].LoadBalancerArns) == 0 {
		return "", fmt.Errorf("target group %s is on no load balancer", tgARN)
	}
	_, lb, ok1 := strings.Cut(out.TargetGroups[0].LoadBalancerArns[0], ":loadbalancer/")
	_, tg, ok2 := strings.Cut(tgARN, ":targetgroup/")
	if !ok1 || !ok2 {
		return "", fmt.Errorf("unexpected ARNs %s, %s", out.TargetGroups[0].LoadBalancerArns[0], tgARN)
	}
	return lb + "/targetgroup/" + tg, nil
}

// first returns the first non-empty string.
func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func isCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}

// DescribeGroup describes the Auto Scaling group and its instances.
func (p *Provider) DescribeGroup(ctx context.Context, name string) (fleet.Group, error) {
	g, err := p.asg(ctx, name)
	if err != nil {
		return fleet.Group{}, err
	}
	return p.group(ctx, g)
}

// ListGroups lists the groups tagged with the service ("" for every
// redblack group).
func (p *Provider) ListGroups(ctx context.Context, service string) ([]fleet.Group, error) {
	var out []fleet.Group
	err := p.eachGroup(ctx, func(g astypes.AutoScalingGroup) error {
		if svc, _ := tagOf(g.Tags, TagService); service != "" && svc != service {
			return nil
		}
		fg, err := p.group(ctx, g)
		out = append(out, fg)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachGroup calls f with every redblack Auto Scaling group (tagged with a
// service) that is not being deleted, until f fails.
func (p *Provider) eachGroup(ctx context.Context, f func(astypes.AutoScalingGroup) error) error {
	pages := autoscaling.NewDescribeAutoScalingGroupsPaginator(p.as, &autoscaling.DescribeAutoScalingGroupsInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("aws: list groups: %w", classify(err))
		}
		for _, g := range page.AutoScalingGroups {
			if _, ok := tagOf(g.Tags, TagService); !ok || deleting(g) {
				continue
			}
			if err := f(g); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleting: the group is being deleted (it is gone for the seam).
func deleting(g astypes.AutoScalingGroup) bool {
	return sdkaws.ToString(g.Status) == "Delete in progress"
}

func tagOf(tags []astypes.TagDescription, key string) (string, bool) {
	for _, t := range tags {
		if sdkaws.ToString(t.Key) == key {
			return sdkaws.ToString(t.Value), true
		}
	}
	return "", false
}

// group turns an Auto Scaling group into the seam's Group, with the
// instances' private IPs from EC2.
func (p *Provider) group(ctx context.Context, g astypes.AutoScalingGroup) (fleet.Group, error) {
	svc, _ := tagOf(g.Tags, TagService)
	version, _ := tagOf(g.Tags, TagVersion)
	role, _ := tagOf(g.Tags, TagRole)
	name := sdkaws.ToString(g.AutoScalingGroupName)
	fg := fleet.Group{
		Spec:    fleet.GroupSpec{Service: svc, Group: name, Version: version, Role: role, Capacity: int(sdkaws.ToInt32(g.DesiredCapacity))},
		Desired: int(sdkaws.ToInt32(g.DesiredCapacity)), Created: sdkaws.ToTime(g.CreatedTime),
	}
	slots, stateful := tagOf(g.Tags, TagSlots)
	if stateful {
		count, _ := tagOf(g.Tags, TagSlotCount)
		fg.Spec.Stateful, fg.Spec.Slots = true, parseSlots(slots)
		fg.Spec.SlotCount, _ = strconv.Atoi(count)
		fg.Spec.Capacity = len(fg.Spec.Slots)
	}
	infos, err := p.describeInstances(ctx, instanceIDs(g))
	if err != nil {
		return fg, err
	}
	targets := p.targetHealth(ctx, g.TargetGroupARNs)
	for _, i := range g.Instances {
		id := sdkaws.ToString(i.InstanceId)
		state := withTarget(State(string(i.LifecycleState), sdkaws.ToString(i.HealthStatus)), targets[id])
		if state == discovery.StateTerminated {
			continue
		}
		in := infos[id]
		fi := fleet.Instance{ID: id, Service: svc, Group: name, Version: version, Address: in.addr, State: state, Started: in.launched}
		if stateful {
			// up only with its slot and the slot's volume
			fi.Slot, fi.SlotCount = in.slot, fg.Spec.SlotCount
			if state == discovery.StateUp && (in.slot == "" || in.volume == "") {
				fi.State = discovery.StateStarting
			}
		}
		fg.Instances = append(fg.Instances, fi)
	}
	return fg, nil
}

// State maps an Auto Scaling instance's lifecycle state and health onto
// discovery's states: InService and Healthy is up.
func State(lifecycle, health string) string {
	switch {
	case strings.HasPrefix(lifecycle, "Terminat") || lifecycle == "Detached" || lifecycle == "Detaching":
		return discovery.StateTerminated
	case lifecycle == string(astypes.LifecycleStateInService) && health == "Healthy":
		return discovery.StateUp
	case lifecycle == string(astypes.LifecycleStateInService):
		return discovery.StateDown
	}
	return discovery.StateStarting
}

// targetHealth reads the target groups' view of their instances (by id):
// healthy, unhealthy, initial, draining, unused or unavailable.
func (p *Provider) targetHealth(ctx context.Context, tgs []string) map[string]string {
	out := map[string]string{}
	for _, tg := range tgs {
		h, err := p.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: sdkaws.String(tg)})
		if err != nil {
			continue // the group's own health stands
		}
		for _, d := range h.TargetHealthDescriptions {
			if d.Target == nil || d.TargetHealth == nil {
				continue
			}
			id := sdkaws.ToString(d.Target.Id)
			// the worst view of any target group counts
			if st := string(d.TargetHealth.State); out[id] == "" || out[id] == "healthy" {
				out[id] = st
			}
		}
	}
	return out
}

// withTarget lets the load balancer's view lower an instance's state: an
// instance the target group finds unhealthy or draining takes no traffic,
// one it is still checking is starting. Healthy, unused and unknown leave
// the Auto Scaling group's view.
func withTarget(state, target string) string {
	if state != discovery.StateUp {
		return state
	}
	switch target {
	case "unhealthy", "draining":
		return discovery.StateDown
	case "initial":
		return discovery.StateStarting
	}
	return state
}

// ec2Instance is what EC2 tells of an instance of a group.
type ec2Instance struct {
	id, addr string // addr: the private IP's host:port
	launched time.Time
	zone     string
	slot     string // its redblack:slot tag
	volume   string // the volume attached at Config.VolumeDevice
}

// describeInstances reads the instances from EC2, by id.
func (p *Provider) describeInstances(ctx context.Context, ids []string) (map[string]ec2Instance, error) {
	infos := map[string]ec2Instance{}
	if len(ids) == 0 {
		return infos, nil
	}
	out, err := p.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
	if err != nil && !isCode(err, "InvalidInstanceID.NotFound") { // terminated meanwhile
		return nil, fmt.Errorf("aws: describe instances: %w", classify(err))
	}
	if out == nil {
		return infos, nil
	}
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			in := ec2Instance{id: sdkaws.ToString(i.InstanceId), launched: sdkaws.ToTime(i.LaunchTime)}
			if ip := sdkaws.ToString(i.PrivateIpAddress); ip != "" {
				in.addr = net.JoinHostPort(ip, strconv.Itoa(p.cfg.Port))
			}
			if i.Placement != nil {
				in.zone = sdkaws.ToString(i.Placement.AvailabilityZone)
			}
			in.slot, _ = ec2TagOf(i.Tags, TagSlot)
			for _, b := range i.BlockDeviceMappings {
				if sdkaws.ToString(b.DeviceName) == p.cfg.VolumeDevice && b.Ebs != nil {
					in.volume = sdkaws.ToString(b.Ebs.VolumeId)
				}
			}
			infos[in.id] = in
		}
	}
	return infos, nil
}

// Instances lists the group's instances.
func (p *Provider) Instances(ctx context.Context, name string) ([]fleet.Instance, error) {
	g, err := p.DescribeGroup(ctx, name)
	return g.Instances, err
}

// Resize sets the group's size (min = max = desired).
func (p *Provider) Resize(ctx context.Context, name string, capacity int) error {
	if _, err := p.DescribeGroup(ctx, name); err != nil {
		return err
	}
	n := sdkaws.Int32(int32(capacity))
	_, err := p.as.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: sdkaws.String(name), MinSize: n, MaxSize: n, DesiredCapacity: n,
	})
	if err != nil {
		return fmt.Errorf("aws: resize %s: %w", name, classify(err))
	}
	return nil
}

// DestroyGroup drains the group and releases its target group, then
// force-deletes it and the launch template the provider created for it. A
// group that does not exist is not an error. The target group goes first:
// when its release fails (the ALB still weighting it, a moment after the
// route moved), the Auto Scaling group is left for the retried command to
// find, rather than a target group nothing would release.
func (p *Provider) DestroyGroup(ctx context.Context, name string) error {
	service := ""
	g, err := p.asg(ctx, name)
	switch {
	case err == nil:
		service, _ = tagOf(g.Tags, TagService)
		if err := p.drain(ctx, g); err != nil {
			return err
		}
	case !errors.Is(err, fleet.ErrGroupNotFound):
		return err
	}
	if p.cfg.ReleaseTargetGroup != nil && service != "" {
		if err := p.cfg.ReleaseTargetGroup(ctx, service, name); err != nil {
			return fmt.Errorf("aws: release the target group of %s: %w", name, err)
		}
	}
	_, err = p.as.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: sdkaws.String(name), ForceDelete: sdkaws.Bool(true)})
	if err != nil && !isCode(err, "ValidationError") { // ValidationError: no such group
		return fmt.Errorf("aws: delete %s: %w", name, classify(err))
	}
	// the template it made, if any: found by a filter, which answers an
	// empty list rather than an error when there is none
	lts, err := p.ec2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{
		Filters: []ec2types.Filter{{Name: sdkaws.String("launch-template-name"), Values: []string{templateName(name)}}},
	})
	if err != nil {
		return fmt.Errorf("aws: find the launch template of %s: %w", name, classify(err))
	}
	for _, lt := range lts.LaunchTemplates {
		_, err = p.ec2.DeleteLaunchTemplate(ctx, &ec2.DeleteLaunchTemplateInput{LaunchTemplateId: lt.LaunchTemplateId})
		if err != nil && !strings.HasPrefix(errorCode(err), "InvalidLaunchTemplate") {
			return fmt.Errorf("aws: delete launch template of %s: %w", name, classify(err))
		}
	}
	return nil
}

// drain detaches the group (as just described) from its target groups and
// waits the drain time for the requests in flight to finish, before the
// force delete.
func (p *Provider) drain(ctx context.Context, g astypes.AutoScalingGroup) error {
	if len(g.TargetGroupARNs) == 0 {
		return nil // nothing attached: nothing to drain
	}
	if _, err := p.as.DetachLoadBalancerTargetGroups(ctx, &autoscaling.DetachLoadBalancerTargetGroupsInput{
		AutoScalingGroupName: g.AutoScalingGroupName, TargetGroupARNs: g.TargetGroupARNs,
	}); err != nil {
		return fmt.Errorf("aws: detach %s from its target groups: %w", sdkaws.ToString(g.AutoScalingGroupName), classify(err))
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(p.cfg.Drain):
		return nil
	}
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TerminateInstance terminates the instance with EC2 TerminateInstances;
// the Auto Scaling group replaces it.
func (p *Provider) TerminateInstance(ctx context.Context, group, instance string) error {
	g, err := p.DescribeGroup(ctx, group)
	if err != nil {
		return err
	}
	found := false
	for _, i := range g.Instances {
		found = found || i.ID == instance
	}
	if !found {
		return fmt.Errorf("aws: %s in %s: %w", instance, group, fleet.ErrInstanceNotFound)
	}
	if _, err := p.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{instance}}); err != nil {
		return fmt.Errorf("aws: terminate %s: %w", instance, classify(err))
	}
	return nil
}

// CheckImage allows ami when its owner is one of owners or its name starts
// with namePrefix (DescribeImages).
func (p *Provider) CheckImage(ctx context.Context, ami string, owners []string, namePrefix string) error {
	out, err := p.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{ami}})
	if err != nil {
		return fmt.Errorf("aws: image %s: %w", ami, err)
	}
	if len(out.Images) != 1 {
		return fmt.Errorf("aws: image %s not found", ami)
	}
	img := out.Images[0]
	owner, name := sdkaws.ToString(img.OwnerId), sdkaws.ToString(img.Name)
	if slices.Contains(owners, owner) || (namePrefix != "" && strings.HasPrefix(name, namePrefix)) {
		return nil
	}
	return fmt.Errorf("aws: image %s (owner %s, name %q) is not allowed: want an owner in %v or a name starting %q", ami, owner, name, owners, namePrefix)
}

package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/rolling"
)

// Stateful groups (strategy rolling) on aws. A slot is an EBS volume,
// tagged with its service and slot name, that outlives every instance and
// group: the provider tags one instance of the group with the slot and
// attaches the slot's volume to it at Config.VolumeDevice, and the
// instance is up only once it has the volume. A volume is attached to one
// instance at a time: a slot that moves to another group (or whose
// instance Chaos Monkey kills) gets its new instance's attachment only once
// the old instance's termination has let the volume go. A group runs in
// one subnet (one availability zone), where its volumes are: an EBS
// volume cannot leave its zone. Mounting the device is the instance's own
// boot's (its user data); the instance finds its slot in its tag
// redblack:slot.

// Tags of stateful groups, their instances and their volumes.
const (
	// TagSlots, on a stateful group: the slots it runs ("0,2").
	TagSlots = "redblack:slots"
	// TagSlotCount, on a stateful group: the service's number of slots.
	TagSlotCount = "redblack:slot-count"
	// TagSlot, on an instance and on a volume: the slot's name ("store-0").
	TagSlot = "redblack:slot"
)

var (
	_ fleet.Slotter = (*Provider)(nil)
	_ fleet.Keeper  = (*Provider)(nil)
)

// formatSlots writes slots as TagSlots holds them.
func formatSlots(slots []int) string {
	out := make([]string, len(slots))
	for i, s := range slots {
		out[i] = strconv.Itoa(s)
	}
	return strings.Join(out, ",")
}

// parseSlots reads TagSlots.
func parseSlots(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// SetSlots implements fleet.Slotter: the group's tag names the slots; the
// instances of the slots it no longer runs are terminated at once (their
// volumes go free when they are gone), and its desired capacity becomes
// the number of slots. Keep tags and equips the new instances.
func (p *Provider) SetSlots(ctx context.Context, group string, slots []int) error {
	g, err := p.asg(ctx, group)
	if err != nil {
		return err
	}
	if _, ok := tagOf(g.Tags, TagSlots); !ok {
		return fmt.Errorf("aws: %s is not a stateful group", group)
	}
	service, _ := tagOf(g.Tags, TagService)
	if _, err := p.as.CreateOrUpdateTags(ctx, &autoscaling.CreateOrUpdateTagsInput{Tags: []astypes.Tag{groupTag(group, TagSlots, formatSlots(slots))}}); err != nil {
		return fmt.Errorf("aws: set the slots of %s: %w", group, classify(err))
	}
	infos, err := p.describeInstances(ctx, instanceIDs(g))
	if err != nil {
		return err
	}
	keep := slotSet(service, slots)
	for _, i := range g.Instances {
		id := sdkaws.ToString(i.InstanceId)
		if slot := infos[id].slot; slot != "" && !keep[slot] {
			if err := p.terminateShrinking(ctx, id); err != nil {
				return err
			}
		}
	}
	return p.raiseDesired(ctx, group, len(slots))
}

// Keep implements fleet.Keeper: for every stateful group, each new
// instance takes a slot the group runs and no instance has (a surplus one
// is terminated), and each instance with a slot gets the slot's volume
// (made in its zone the first time) once no other instance holds it.
func (p *Provider) Keep(ctx context.Context) error {
	var errs []error
	err := p.eachGroup(ctx, func(g astypes.AutoScalingGroup) error {
		if _, ok := tagOf(g.Tags, TagSlots); ok {
			errs = append(errs, p.keepGroup(ctx, g))
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// keepGroup keeps one stateful group.
func (p *Provider) keepGroup(ctx context.Context, g astypes.AutoScalingGroup) error {
	name := sdkaws.ToString(g.AutoScalingGroupName)
	service, _ := tagOf(g.Tags, TagService)
	tag, _ := tagOf(g.Tags, TagSlots)
	want := parseSlots(tag)
	infos, err := p.describeInstances(ctx, instanceIDs(g))
	if err != nil {
		return err
	}
	// the group's live instances, oldest first
	live := []ec2Instance{}
	for _, i := range g.Instances {
		if State(string(i.LifecycleState), sdkaws.ToString(i.HealthStatus)) == discovery.StateTerminated {
			continue
		}
		if in, ok := infos[sdkaws.ToString(i.InstanceId)]; ok {
			live = append(live, in)
		}
	}
	slices.SortFunc(live, func(a, b ec2Instance) int { return a.launched.Compare(b.launched) })
	held := map[string]string{} // slot → instance
	wanted := slotSet(service, want)
	var fresh []ec2Instance
	for _, in := range live {
		switch {
		case in.slot == "":
			fresh = append(fresh, in)
		case !wanted[in.slot] || held[in.slot] != "": // a slot it no longer runs, or a duplicate
			if err := p.terminateShrinking(ctx, in.id); err != nil {
				return err
			}
		default:
			held[in.slot] = in.id
		}
	}
	for _, in := range fresh {
		free := ""
		for _, s := range rolling.SlotNames(service, want) {
			if held[s] == "" {
				free = s
				break
			}
		}
		if free == "" {
			if err := p.terminateShrinking(ctx, in.id); err != nil {
				return err
			}
			continue
		}
		if _, err := p.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{in.id}, Tags: []ec2types.Tag{ec2Tag(TagSlot, free)}}); err != nil {
			return fmt.Errorf("aws: tag %s with slot %s: %w", in.id, free, classify(err))
		}
		held[free] = in.id
	}
	var errs []error
	for slot, id := range held {
		if infos[id].volume == "" {
			errs = append(errs, p.equip(ctx, service, slot, id, infos[id].zone))
		}
	}
	if len(held) < len(want) {
		errs = append(errs, p.raiseDesired(ctx, name, len(want)))
	}
	return errors.Join(errs...)
}

// equip attaches the slot's volume to the instance if no other instance
// holds it, making the volume (in the instance's zone) if the slot has
// none yet.
func (p *Provider) equip(ctx context.Context, service, slot, instance, zone string) error {
	vols, err := p.volumes(ctx, service, slot)
	if err != nil {
		return err
	}
	var vol ec2types.Volume
	switch len(vols) {
	case 0:
		out, err := p.ec2.CreateVolume(ctx, &ec2.CreateVolumeInput{
			AvailabilityZone: sdkaws.String(zone), Size: sdkaws.Int32(int32(p.cfg.VolumeSize)), VolumeType: ec2types.VolumeTypeGp3,
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeVolume, Tags: []ec2types.Tag{ec2Tag(TagService, service), ec2Tag(TagSlot, slot)}}},
		})
		if err != nil {
			return fmt.Errorf("aws: make the volume of %s: %w", slot, classify(err))
		}
		vol = ec2types.Volume{VolumeId: out.VolumeId, State: out.State, AvailabilityZone: out.AvailabilityZone}
	case 1:
		vol = vols[0]
	default:
		return fmt.Errorf("aws: slot %s has %d volumes: leave one (redblack:slot tags)", slot, len(vols))
	}
	switch {
	case sdkaws.ToString(vol.AvailabilityZone) != zone:
		return fmt.Errorf("aws: %s's volume %s is in %s and its instance %s in %s: give the group one subnet, in the volume's zone",
			slot, sdkaws.ToString(vol.VolumeId), sdkaws.ToString(vol.AvailabilityZone), instance, zone)
	case vol.State != ec2types.VolumeStateAvailable || len(vol.Attachments) > 0:
		return nil // held by the instance it leaves, or still being made: the next keep
	}
	if _, err := p.ec2.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: vol.VolumeId, InstanceId: sdkaws.String(instance), Device: sdkaws.String(p.cfg.VolumeDevice)}); err != nil {
		if isCode(err, "VolumeInUse") || isCode(err, "IncorrectState") {
			return nil
		}
		return fmt.Errorf("aws: attach %s's volume to %s: %w", slot, instance, classify(err))
	}
	return nil
}

// Volume is a slot's EBS volume.
type Volume struct {
	ID, Slot, Zone, State string
	// Instance is the instance it is attached to ("" for none).
	Instance string
	SizeGiB  int
}

// Volumes lists the service's slot volumes.
func (p *Provider) Volumes(ctx context.Context, service string) ([]Volume, error) {
	vols, err := p.volumes(ctx, service, "")
	if err != nil {
		return nil, err
	}
	out := make([]Volume, 0, len(vols))
	for _, v := range vols {
		slot, _ := ec2TagOf(v.Tags, TagSlot)
		vol := Volume{ID: sdkaws.ToString(v.VolumeId), Slot: slot, Zone: sdkaws.ToString(v.AvailabilityZone), State: string(v.State), SizeGiB: int(sdkaws.ToInt32(v.Size))}
		if len(v.Attachments) > 0 {
			vol.Instance = sdkaws.ToString(v.Attachments[0].InstanceId)
		}
		out = append(out, vol)
	}
	slices.SortFunc(out, func(a, b Volume) int { return strings.Compare(a.Slot, b.Slot) })
	return out, nil
}

// DestroyVolumes deletes the service's slot volumes and returns those it
// deleted: refused while any group of the service exists (its instances
// may hold them).
func (p *Provider) DestroyVolumes(ctx context.Context, service string) ([]Volume, error) {
	groups, err := p.ListGroups(ctx, service)
	if err != nil {
		return nil, err
	}
	if len(groups) > 0 {
		return nil, fmt.Errorf("aws: %s still has %d group(s) (%s): destroy them first", service, len(groups), groups[0].Spec.Group)
	}
	vols, err := p.Volumes(ctx, service)
	if err != nil {
		return nil, err
	}
	for i, v := range vols {
		if _, err := p.ec2.DeleteVolume(ctx, &ec2.DeleteVolumeInput{VolumeId: sdkaws.String(v.ID)}); err != nil && !isCode(err, "InvalidVolume.NotFound") {
			return vols[:i], fmt.Errorf("aws: delete volume %s: %w", v.ID, classify(err))
		}
	}
	return vols, nil
}

// volumes finds the service's volumes by their tags (one slot's, or all).
func (p *Provider) volumes(ctx context.Context, service, slot string) ([]ec2types.Volume, error) {
	filters := []ec2types.Filter{{Name: sdkaws.String("tag:" + TagService), Values: []string{service}}}
	if slot != "" {
		filters = append(filters, ec2types.Filter{Name: sdkaws.String("tag:" + TagSlot), Values: []string{slot}})
	} else {
		filters = append(filters, ec2types.Filter{Name: sdkaws.String("tag-key"), Values: []string{TagSlot}})
	}
	var out []ec2types.Volume
	pages := ec2.NewDescribeVolumesPaginator(p.ec2, &ec2.DescribeVolumesInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("aws: describe volumes of %s: %w", service, classify(err))
		}
		for _, v := range page.Volumes {
			if v.State != ec2types.VolumeStateDeleting && v.State != ec2types.VolumeStateDeleted {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

// terminateShrinking terminates an instance of a group and lowers the
// group's desired capacity with it, so the group does not replace it.
func (p *Provider) terminateShrinking(ctx context.Context, id string) error {
	_, err := p.as.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: sdkaws.String(id), ShouldDecrementDesiredCapacity: sdkaws.Bool(true)})
	if err != nil && !isCode(err, "ValidationError") { // gone already
		return fmt.Errorf("aws: terminate %s: %w", id, classify(err))
	}
	return nil
}

// raiseDesired sets a stateful group's desired capacity to n if it is
// lower (a group never shrinks by its desired capacity, which would let
// Auto Scaling choose which slot goes, but by terminateShrinking).
func (p *Provider) raiseDesired(ctx context.Context, group string, n int) error {
	g, err := p.asg(ctx, group)
	if err != nil {
		return err
	}
	if int(sdkaws.ToInt32(g.DesiredCapacity)) >= n {
		return nil
	}
	if _, err := p.as.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: sdkaws.String(group), DesiredCapacity: sdkaws.Int32(int32(n)), MaxSize: sdkaws.Int32(max(int32(n), sdkaws.ToInt32(g.MaxSize)))}); err != nil {
		return fmt.Errorf("aws: grow %s to %d: %w", group, n, classify(err))
	}
	return nil
}

// asg describes one Auto Scaling group (ErrGroupNotFound if it is gone or
// being deleted).
func (p *Provider) asg(ctx context.Context, name string) (astypes.AutoScalingGroup, error) {
	out, err := p.as.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
	if err != nil {
		return astypes.AutoScalingGroup{}, fmt.Errorf("aws: describe %s: %w", name, classify(err))
	}
	for _, g := range out.AutoScalingGroups {
		if sdkaws.ToString(g.AutoScalingGroupName) == name && !deleting(g) {
			return g, nil
		}
	}
	return astypes.AutoScalingGroup{}, fmt.Errorf("aws: %s: %w", name, fleet.ErrGroupNotFound)
}

// slotSet is the names of slots, as a set.
func slotSet(service string, slots []int) map[string]bool {
	out := map[string]bool{}
	for _, s := range rolling.SlotNames(service, slots) {
		out[s] = true
	}
	return out
}

func instanceIDs(g astypes.AutoScalingGroup) []string {
	ids := make([]string, 0, len(g.Instances))
	for _, i := range g.Instances {
		ids = append(ids, sdkaws.ToString(i.InstanceId))
	}
	return ids
}

func groupTag(group, k, v string) astypes.Tag {
	return astypes.Tag{ResourceId: sdkaws.String(group), ResourceType: sdkaws.String("auto-scaling-group"), Key: sdkaws.String(k), Value: sdkaws.String(v), PropagateAtLaunch: sdkaws.Bool(false)}
}

func ec2Tag(k, v string) ec2types.Tag {
	return ec2types.Tag{Key: sdkaws.String(k), Value: sdkaws.String(v)}
}

func ec2TagOf(tags []ec2types.Tag, key string) (string, bool) {
	for _, t := range tags {
		if sdkaws.ToString(t.Key) == key {
			return sdkaws.ToString(t.Value), true
		}
	}
	return "", false
}

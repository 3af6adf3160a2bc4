// Package fleet is the provisioner's seam to the machines: the Provider
// interface that the local provider (processes on this machine) and the aws
// provider (Auto Scaling groups) implement, and the types that cross it.
package fleet

import (
	"context"
	"errors"
	"time"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/spec"
)

// GroupSpec is what a server group runs and how it is checked.
type GroupSpec struct {
	Service  string          `json:"service"`
	Group    string          `json:"group"`
	Version  string          `json:"version"`
	Role     string          `json:"role"`
	Capacity int             `json:"capacity"`
	Artifact events.Artifact `json:"artifact"`
	Health   spec.Health     `json:"health"`
	// Protocol is the spec's: with grpc, the local provider checks an
	// instance's health with grpc.health.v1 rather than an HTTP GET.
	Protocol string `json:"protocol,omitempty"`
	// Release is the release that made the group ("" for a group made by
	// hand).
	Release string `json:"release,omitempty"`
	// AWS places the group (aws provider; others ignore it).
	AWS spec.AWS `json:"aws,omitempty"`
	// Host is the host the group runs on, for local provisioners on
	// several hosts (package hosts); empty, one is chosen.
	Host string `json:"host,omitempty"`
	// Stateful: the group runs stable slots (strategy rolling), each with
	// its volume, and Slots are the slots it runs (0-based; its capacity
	// is their number). A slot's volume outlives its instances: a
	// replacement, a kill and a move to another group keep it.
	Stateful bool  `json:"stateful,omitempty"`
	Slots    []int `json:"slots,omitempty"`
	// SlotCount is the service's number of slots (its capacity): callers
	// hash keys over that many, whichever are up.
	SlotCount int `json:"slot_count,omitempty"`
	// Autoscale, for the production group of an autoscaled service: the
	// aws provider gives its Auto Scaling group these bounds and a
	// target-tracking policy (the local provisioner scales by itself).
	Autoscale *spec.Autoscale `json:"autoscale,omitempty"`
}

// Instance is one running copy of a group.
type Instance struct {
	ID         string    `json:"id"`
	Service    string    `json:"service"`
	Group      string    `json:"group"`
	Version    string    `json:"version"`
	Address    string    `json:"address"`
	State      string    `json:"state"` // discovery.State*
	Started    time.Time `json:"started"`
	LastHealth time.Time `json:"last_health,omitempty"`
	// PID is the process id (local provider) or 0.
	PID int `json:"pid,omitempty"`
	// Slot is the stable slot a stateful group's instance runs
	// ("store-0"), "" for an ordinary instance, and SlotCount the
	// service's number of slots.
	Slot      string `json:"slot,omitempty"`
	SlotCount int    `json:"slot_count,omitempty"`
}

// Slotter is a provider that runs stateful groups in stable slots with a
// volume each (the local one, a directory; the aws one, an EBS volume): a
// rolling release moves slots from the old version's group to the new
// one's, and back on a roll-back.
type Slotter interface {
	// SetSlots makes the stateful group run exactly these slots: the
	// instances of other slots stop, and a slot's instance starts once no
	// other process of the service holds the slot's volume. It returns at
	// once; the changes report the instances.
	SetSlots(ctx context.Context, group string, slots []int) error
}

// Keeper is a provider whose groups need keeping between calls (the aws
// one gives a stateful group's new instances their slots and volumes):
// the observer calls Keep every second, from one copy at a time.
type Keeper interface {
	Keep(ctx context.Context) error
}

// CPUMeter is a provider that can tell the CPU its instances use (the
// local one, from /proc): the autoscaler's target_cpu reads it.
type CPUMeter interface {
	// CPU is the CPU time each live instance of the group has used since
	// it started, by instance id.
	CPU(ctx context.Context, group string) (map[string]time.Duration, error)
}

// Group is a server group as the provider sees it.
type Group struct {
	Spec      GroupSpec  `json:"spec"`
	Desired   int        `json:"desired"`
	Created   time.Time  `json:"created"`
	Instances []Instance `json:"instances"`
}

// Up counts the instances in state up.
func (g Group) Up() int {
	n := 0
	for _, i := range g.Instances {
		if i.State == "up" {
			n++
		}
	}
	return n
}

// ChangeType says what happened to an instance.
type ChangeType string

// Instance changes a provider reports.
const (
	Started    ChangeType = "started"    // launched, not yet healthy
	Up         ChangeType = "up"         // passed its health checks
	Down       ChangeType = "down"       // failed its health checks
	Terminated ChangeType = "terminated" // gone (asked to, or it exited)
	Replaced   ChangeType = "replaced"   // a new instance took a terminated one's place
	CrashLoop  ChangeType = "crashloop"  // instances keep dying before they are up
)

// Change is one instance change. Reason says why (exit status, health
// failure, who asked).
type Change struct {
	Type     ChangeType
	Instance Instance
	Reason   string
}

// Observer receives the provider's changes, in order per instance. It must
// not block for long.
type Observer func(Change)

// Errors a caller branches on.
var (
	ErrGroupNotFound    = errors.New("no such server group")
	ErrInstanceNotFound = errors.New("no such instance")
	// ErrBadArtifact: the artifact cannot run on this provider (missing
	// command, unknown AMI). Nothing was created.
	ErrBadArtifact = errors.New("artifact cannot run")
	// ErrCapacity: the provider cannot have that many instances (AWS
	// InsufficientInstanceCapacity, LimitExceeded). Nothing was left behind.
	ErrCapacity = errors.New("capacity unavailable")
)

// Provider is what the provisioner needs of the machines. Every method is
// safe for concurrent use; create and destroy are idempotent by name.
type Provider interface {
	// CreateGroup creates the group and starts its instances, returning at
	// once. A group of that name that exists already is returned as it is.
	// AWS: CreateLaunchTemplateVersion, then CreateAutoScalingGroup with that
	// launch template version.
	CreateGroup(ctx context.Context, s GroupSpec) (Group, error)

	// DescribeGroup returns the group with its instances, or ErrGroupNotFound.
	// AWS: DescribeAutoScalingGroups.
	DescribeGroup(ctx context.Context, name string) (Group, error)

	// ListGroups returns every group of service ("" for all).
	// AWS: DescribeAutoScalingGroups filtered on the redblack:service tag.
	ListGroups(ctx context.Context, service string) ([]Group, error)

	// Instances lists the group's instances with their addresses and states.
	// AWS: DescribeAutoScalingGroups for the instance ids, EC2
	// DescribeInstances for their private IPs, target health for the state.
	Instances(ctx context.Context, name string) ([]Instance, error)

	// Resize sets the desired capacity; the provider starts or stops
	// instances to match. AWS: SetDesiredCapacity.
	Resize(ctx context.Context, name string, capacity int) error

	// DestroyGroup stops every instance and removes the group. Destroying a
	// group that does not exist is not an error. AWS: DeleteAutoScalingGroup
	// with ForceDelete, then DeleteLaunchTemplateVersions.
	DestroyGroup(ctx context.Context, name string) error

	// TerminateInstance kills one instance at once; the group replaces it,
	// as an Auto Scaling group does. AWS: EC2 TerminateInstances.
	TerminateInstance(ctx context.Context, group, instance string) error
}

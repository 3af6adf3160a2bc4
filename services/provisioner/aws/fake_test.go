package aws_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/provisioner/aws/awsfake"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/fleettest"
	"github.com/redblack/redblack/shared/events"
)

// TestBehaviourOnTheFake: the behaviour suite that runs on moto runs on the
// in-memory fake too, with every fourth call throttled and every new group
// missing from its first two describes.
func TestBehaviourOnTheFake(t *testing.T) {
	var last *awsfake.AWS
	fleettest.Run(t, func(t *testing.T) fleettest.Harness {
		last = awsfake.New(awsfake.Faults{ThrottleEvery: 4, HideNew: 2})
		p := aws.FromConfig(aws.Config{Subnets: []string{"subnet-1"}, ConsistencyWait: 5 * time.Second}, last.Config())
		return fleettest.Harness{Provider: p, Artifact: events.Artifact{AMI: "ami-0fake"}, Timeout: 10 * time.Second}
	})
	if last.Injected["Throttling"] == 0 || last.Injected["hidden"] == 0 {
		t.Fatalf("nothing injected: %v", last.Injected)
	}
}

// TestCapacityOnTheFake: LimitExceeded is fleet.ErrCapacity and nothing is
// left in the fake.
func TestCapacityOnTheFake(t *testing.T) {
	f := awsfake.New(awsfake.Faults{Capacity: map[string]string{"hello-v009": "LimitExceeded"}})
	p := aws.FromConfig(aws.Config{Subnets: []string{"subnet-1"}}, f.Config())
	_, err := p.CreateGroup(context.Background(), fleet.GroupSpec{Service: "hello", Group: "hello-v009", Version: "v9", Capacity: 1, Artifact: events.Artifact{AMI: "ami-1"}})
	if !errors.Is(err, fleet.ErrCapacity) || !strings.Contains(err.Error(), "LimitExceeded") {
		t.Fatalf("err = %v", err)
	}
	if gs, err := p.ListGroups(context.Background(), ""); err != nil || len(gs) != 0 {
		t.Fatalf("left: %v %v", gs, err)
	}
	if _, err := p.CreateGroup(context.Background(), fleet.GroupSpec{Service: "hello", Group: "hello-v010", Version: "v10", Capacity: 1, Artifact: events.Artifact{AMI: "nope"}}); !errors.Is(err, fleet.ErrBadArtifact) {
		t.Fatalf("bad AMI: %v", err)
	}
}

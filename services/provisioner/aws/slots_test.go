package aws_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redblack/redblack/services/provisioner/aws"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/testkit/moto"
)

// slotsOf is a group's up instances by slot.
func slotsOf(t *testing.T, p *aws.Provider, group string) map[string]fleet.Instance {
	t.Helper()
	g, err := p.DescribeGroup(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]fleet.Instance{}
	for _, i := range g.Instances {
		if i.State == discovery.StateUp && i.Slot != "" {
			out[i.Slot] = i
		}
	}
	return out
}

// keepUntil keeps the provider's groups (as the observer does, every
// 100 ms here) until ok holds, for at most 20 s.
func keepUntil(t *testing.T, p *aws.Provider, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 20s: %s", what)
		}
		if err := p.Keep(context.Background()); err != nil {
			t.Logf("keep: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// volumeBySlot is the service's volumes by slot.
func volumeBySlot(t *testing.T, p *aws.Provider, service string) map[string]aws.Volume {
	t.Helper()
	vols, err := p.Volumes(context.Background(), service)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]aws.Volume{}
	for _, v := range vols {
		out[v.Slot] = v
	}
	return out
}

// TestStatefulSlotsOnMoto: a stateful group's instances each take a slot
// and the slot's EBS volume; a killed instance's replacement gets the same
// volume; a slot moved to another group keeps its volume, which its new
// instance gets only once the old one has let it go; destroying the groups
// keeps the volumes, and destroying the volumes is refused while a group
// exists.
func TestStatefulSlotsOnMoto(t *testing.T) {
	srv := moto.Start(t)
	p, art := onMoto(t, srv)
	ctx := context.Background()
	spec := func(group, version string, slots ...int) fleet.GroupSpec {
		return fleet.GroupSpec{Service: "store", Group: group, Version: version, Capacity: len(slots), Artifact: art,
			Stateful: true, Slots: slots, SlotCount: 3}
	}
	if _, err := p.CreateGroup(ctx, spec("store-v001", "v1", 0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	keepUntil(t, p, "store-v001 runs 3 slots", func() bool { return len(slotsOf(t, p, "store-v001")) == 3 })
	g, _ := p.DescribeGroup(ctx, "store-v001")
	if !g.Spec.Stateful || fmt.Sprint(g.Spec.Slots) != "[0 1 2]" || g.Spec.SlotCount != 3 {
		t.Fatalf("store-v001's spec read back: %+v", g.Spec)
	}
	v1 := slotsOf(t, p, "store-v001")
	vols := volumeBySlot(t, p, "store")
	for _, slot := range []string{"store-0", "store-1", "store-2"} {
		if v := vols[slot]; v.ID == "" || v.Instance != v1[slot].ID || v1[slot].SlotCount != 3 {
			t.Fatalf("%s: volume %+v, instance %+v", slot, v, v1[slot])
		}
	}

	// Chaos Monkey's kill: the replacement takes the slot and its volume
	if err := p.TerminateInstance(ctx, "store-v001", v1["store-1"].ID); err != nil {
		t.Fatal(err)
	}
	keepUntil(t, p, "store-1 replaced", func() bool {
		i, ok := slotsOf(t, p, "store-v001")["store-1"]
		return ok && i.ID != v1["store-1"].ID
	})
	if v := volumeBySlot(t, p, "store")["store-1"]; v.ID != vols["store-1"].ID || v.Instance != slotsOf(t, p, "store-v001")["store-1"].ID {
		t.Fatalf("store-1's volume after the kill: %+v, was %s", v, vols["store-1"].ID)
	}

	// store-0 to store-v002: its new instance waits while the old one holds
	// the volume
	if _, err := p.CreateGroup(ctx, spec("store-v002", "v2", 0)); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := p.Keep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	g2, _ := p.DescribeGroup(ctx, "store-v002")
	if len(g2.Instances) != 1 || g2.Instances[0].Slot != "store-0" || g2.Instances[0].State == discovery.StateUp {
		t.Fatalf("store-v002 while store-v001 holds store-0: %+v", g2.Instances)
	}
	if v := volumeBySlot(t, p, "store")["store-0"]; v.Instance != v1["store-0"].ID {
		t.Fatalf("store-0's volume moved while its old instance ran: %+v", v)
	}
	if err := p.SetSlots(ctx, "store-v001", []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	keepUntil(t, p, "store-0 up in store-v002", func() bool { return len(slotsOf(t, p, "store-v002")) == 1 })
	if v := volumeBySlot(t, p, "store")["store-0"]; v.ID != vols["store-0"].ID || v.Instance != slotsOf(t, p, "store-v002")["store-0"].ID {
		t.Fatalf("store-0's volume after the move: %+v, was %s", v, vols["store-0"].ID)
	}
	if s := slotsOf(t, p, "store-v001"); len(s) != 2 || s["store-0"].ID != "" {
		t.Fatalf("store-v001 after the move: %v", s)
	}

	if _, err := p.DestroyVolumes(ctx, "store"); err == nil {
		t.Fatal("volumes destroyed while groups exist")
	}
	for _, g := range []string{"store-v001", "store-v002"} {
		if err := p.DestroyGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	left := volumeBySlot(t, p, "store")
	for slot, v := range vols {
		if left[slot].ID != v.ID || left[slot].Instance != "" {
			t.Fatalf("after the groups: %s's volume %+v, was %s", slot, left[slot], v.ID)
		}
	}
	if gone, err := p.DestroyVolumes(ctx, "store"); err != nil || len(gone) != len(vols) {
		t.Fatalf("destroyed %v: %v", gone, err)
	}
	if left := volumeBySlot(t, p, "store"); len(left) != 0 {
		t.Fatalf("volumes left after destroy: %v", left)
	}
}

package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/fleettest"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/testkit"
)

// storeSpec is a stateful group of examples/store running slots.
func storeSpec(store, group, version string, slots ...int) fleet.GroupSpec {
	return fleet.GroupSpec{Service: "store", Group: group, Version: version, Stateful: true, Slots: slots, SlotCount: 2,
		Artifact: events.Artifact{Command: []string{store, "--version", version}}, Health: fast}
}

// bySlot is the group's up instance of slot.
func bySlot(t *testing.T, l *Local, group, slot string) fleet.Instance {
	t.Helper()
	g, err := l.DescribeGroup(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range g.Instances {
		if i.Slot == slot && i.State == "up" {
			return i
		}
	}
	t.Fatalf("%s has no instance of %s up: %+v", group, slot, g.Instances)
	return fleet.Instance{}
}

func put(t *testing.T, addr, key, value string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/kv/"+key, strings.NewReader(value))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %s", key, resp.Status)
	}
}

func get(t *testing.T, addr, key string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/kv/" + key)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}

// TestStatefulSlotsKeepTheirVolumes: a stateful group's instances run
// stable slots, each with its volume (REDBLACK_VOLUME under
// <data>/volumes/<service>/<slot>). A killed instance is replaced in the
// same slot with the same data; a slot moved to another group (a rolling
// release) starts there only once its old process has exited (the store
// locks its volume, so an early start would crash), and finds the data; the
// group's destruction leaves the volumes.
func TestStatefulSlotsKeepTheirVolumes(t *testing.T) {
	store, err := testkit.Build(t.TempDir(), testkit.StorePackage, "store")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testkit.KillAll(store) })
	cfg := testConfig(t)
	l, r := open(t, cfg)
	ctx := context.Background()
	if _, err := l.CreateGroup(ctx, storeSpec(store, "store-v001", "v1", 0, 1)); err != nil {
		t.Fatal(err)
	}
	fleettest.WaitUp(t, l, "store-v001", 2, 15*time.Second)
	s0 := bySlot(t, l, "store-v001", "store-0")
	bySlot(t, l, "store-v001", "store-1")
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", s0.PID))
	volume := filepath.Join(filepath.Dir(cfg.Dir), "volumes", "store", "store-0")
	want := VolumeEnv + "=" + volume
	if os.Geteuid() == 0 { // sandboxed: the volume is handed open, as fd 3
		want = VolumeEnv + "=/proc/self/fd/3"
		if fd3, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", s0.PID)); err != nil || fd3 != volume {
			t.Fatalf("fd 3 of the instance is %q (%v), want its volume %s", fd3, err, volume)
		}
	}
	for _, kv := range []string{want, SlotEnv + "=store-0"} {
		if !strings.Contains(string(env), kv) {
			t.Fatalf("environment lacks %s", kv)
		}
	}
	put(t, s0.Address, "k", "one")

	// 1. a kill: replaced in its slot, with its data
	if err := syscall.Kill(s0.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, fleet.Replaced, 1)
	fleettest.WaitUp(t, l, "store-v001", 2, 15*time.Second)
	again := bySlot(t, l, "store-v001", "store-0")
	if again.ID == s0.ID {
		t.Fatalf("slot 0 still runs %s after its kill", s0.ID)
	}
	if v := get(t, again.Address, "k"); v != "one" {
		t.Fatalf("slot 0's replacement reads k=%q; want one", v)
	}
	put(t, again.Address, "k", "two")

	// 2. slot 0 moves to a new group: asked of the new group first, it
	// waits for the old group's instance to exit. That one is stopped
	// (SIGSTOP) so it exits only at its SIGKILL, a grace period after its
	// SIGTERM: an instance started meanwhile would find the volume locked
	// and crash (checked at the end).
	if err := syscall.Kill(again.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateGroup(ctx, storeSpec(store, "store-v002", "v2")); err != nil {
		t.Fatal(err)
	}
	if err := l.SetSlots(ctx, "store-v002", []int{0}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetSlots(ctx, "store-v001", []int{1}); err != nil {
		t.Fatal(err)
	}
	fleettest.WaitUp(t, l, "store-v002", 1, 15*time.Second)
	moved := bySlot(t, l, "store-v002", "store-0")
	if v := get(t, moved.Address, "k"); v != "two" {
		t.Fatalf("slot 0 in store-v002 reads k=%q; want two", v)
	}
	if g, _ := l.DescribeGroup(ctx, "store-v001"); len(g.Instances) != 1 || g.Instances[0].Slot != "store-1" || len(g.Spec.Slots) != 1 {
		t.Fatalf("store-v001 after the move: %+v", g)
	}
	if err := l.Resize(ctx, "store-v002", 3); err == nil {
		t.Fatal("a stateful group was resized by a capacity")
	}
	for _, bad := range [][]int{{0, 0}, {2}, {-1}} {
		if err := l.SetSlots(ctx, "store-v002", bad); err == nil {
			t.Fatalf("slots %v of 2 were accepted", bad)
		}
	}

	// 3. the volumes outlive the groups; only the explicit destroy, once
	// no group of the service is left, deletes them
	if _, err := DestroyVolumes(cfg, "store"); !errors.Is(err, ErrVolumesInUse) {
		t.Fatalf("destroy with groups running: %v", err)
	}
	for _, g := range []string{"store-v001", "store-v002"} {
		if err := l.DestroyGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(volume, "store.log")); err != nil || !strings.Contains(string(b), "two") {
		t.Fatalf("slot 0's volume after the groups were destroyed: %q %v", b, err)
	}
	vols, err := Volumes(cfg, "store")
	if err != nil || len(vols) != 2 || vols[0].Slot != "store-0" || vols[0].Bytes == 0 {
		t.Fatalf("volumes: %+v %v", vols, err)
	}
	if gone, err := DestroyVolumes(cfg, "store"); err != nil || len(gone) != 2 {
		t.Fatalf("destroy: %+v %v", gone, err)
	}
	if _, err := os.Stat(volume); !os.IsNotExist(err) {
		t.Fatalf("slot 0's volume after its destroy: %v", err)
	}
	for _, c := range r.changes {
		if strings.Contains(c.Reason, "crashed") {
			t.Fatalf("an instance crashed: %+v", c)
		}
	}
}

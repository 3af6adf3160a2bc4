// Package fleettest is the behaviour suite of fleet.Provider: the same
// tests run against every implementation (local processes now; the AWS
// fake and moto later), so each stays honest against the others.
package fleettest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/spec"
)

// Harness is one implementation under test.
type Harness struct {
	Provider fleet.Provider
	// Artifact runs a healthy instance on this provider.
	Artifact events.Artifact
	// Health is the health check of the test groups.
	Health spec.Health
	// Timeout bounds each wait for instances to come up (default 20 s).
	Timeout time.Duration
}

// Run runs every behaviour test; newHarness gives each a fresh provider.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := map[string]func(*testing.T, Harness){
		"CreateIsIdempotent":      testCreateIdempotent,
		"ResizeUpAndDown":         testResize,
		"TerminateIsReplaced":     testTerminate,
		"DestroyIsIdempotent":     testDestroy,
		"UnknownGroupAndInstance": testUnknown,
		"ListGroupsByService":     testList,
	}
	for name, f := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			if h.Timeout == 0 {
				h.Timeout = 20 * time.Second
			}
			f(t, h)
		})
	}
}

func (h Harness) spec(service, group string, n int) fleet.GroupSpec {
	return fleet.GroupSpec{Service: service, Group: group, Version: "v1", Role: "production", Capacity: n, Artifact: h.Artifact, Health: h.Health}
}

// WaitUp waits until group has exactly n instances, all up, and returns it.
func WaitUp(t *testing.T, p fleet.Provider, group string, n int, timeout time.Duration) fleet.Group {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var g fleet.Group
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		g, err = p.DescribeGroup(ctx, group)
		cancel()
		if err == nil && len(g.Instances) == n && g.Up() == n {
			return g
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: want %d instances up within %s; have %d of %d up (err %v)", group, n, timeout, g.Up(), len(g.Instances), err)
	return g
}

func ids(g fleet.Group) map[string]bool {
	m := map[string]bool{}
	for _, i := range g.Instances {
		m[i.ID] = true
	}
	return m
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func testCreateIdempotent(t *testing.T, h Harness) {
	t.Cleanup(func() { h.Provider.DestroyGroup(context.Background(), "suite-v001") })
	if _, err := h.Provider.CreateGroup(ctx(t), h.spec("suite", "suite-v001", 2)); err != nil {
		t.Fatal(err)
	}
	first := WaitUp(t, h.Provider, "suite-v001", 2, h.Timeout)
	for _, i := range first.Instances {
		if i.Address == "" || i.Group != "suite-v001" || i.Service != "suite" || i.Version != "v1" {
			t.Fatalf("instance %+v", i)
		}
	}
	again, err := h.Provider.CreateGroup(ctx(t), h.spec("suite", "suite-v001", 2))
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Instances) != 2 || fmt.Sprint(ids(again)) != fmt.Sprint(ids(first)) {
		t.Fatalf("second create changed the group: %v → %v", ids(first), ids(again))
	}
	insts, err := h.Provider.Instances(ctx(t), "suite-v001")
	if err != nil || len(insts) != 2 {
		t.Fatalf("Instances = %d, %v", len(insts), err)
	}
}

func testResize(t *testing.T, h Harness) {
	t.Cleanup(func() { h.Provider.DestroyGroup(context.Background(), "suite-v002") })
	if _, err := h.Provider.CreateGroup(ctx(t), h.spec("suite", "suite-v002", 1)); err != nil {
		t.Fatal(err)
	}
	WaitUp(t, h.Provider, "suite-v002", 1, h.Timeout)
	if err := h.Provider.Resize(ctx(t), "suite-v002", 3); err != nil {
		t.Fatal(err)
	}
	g := WaitUp(t, h.Provider, "suite-v002", 3, h.Timeout)
	if g.Desired != 3 {
		t.Fatalf("desired %d", g.Desired)
	}
	if err := h.Provider.Resize(ctx(t), "suite-v002", 1); err != nil {
		t.Fatal(err)
	}
	WaitUp(t, h.Provider, "suite-v002", 1, h.Timeout)
}

func testTerminate(t *testing.T, h Harness) {
	t.Cleanup(func() { h.Provider.DestroyGroup(context.Background(), "suite-v003") })
	if _, err := h.Provider.CreateGroup(ctx(t), h.spec("suite", "suite-v003", 2)); err != nil {
		t.Fatal(err)
	}
	before := WaitUp(t, h.Provider, "suite-v003", 2, h.Timeout)
	victim := before.Instances[0].ID
	if err := h.Provider.TerminateInstance(ctx(t), "suite-v003", victim); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(h.Timeout)
	for {
		g, err := h.Provider.DescribeGroup(ctx(t), "suite-v003")
		if err == nil && !ids(g)[victim] && len(g.Instances) == 2 && g.Up() == 2 {
			return // replaced
		}
		if time.Now().After(deadline) {
			t.Fatalf("victim %s not replaced: %v", victim, ids(g))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testDestroy(t *testing.T, h Harness) {
	if _, err := h.Provider.CreateGroup(ctx(t), h.spec("suite", "suite-v004", 1)); err != nil {
		t.Fatal(err)
	}
	WaitUp(t, h.Provider, "suite-v004", 1, h.Timeout)
	for range 2 {
		if err := h.Provider.DestroyGroup(ctx(t), "suite-v004"); err != nil {
			t.Fatalf("destroy: %v", err)
		}
	}
	if _, err := h.Provider.DescribeGroup(ctx(t), "suite-v004"); !errors.Is(err, fleet.ErrGroupNotFound) {
		t.Fatalf("describe after destroy = %v", err)
	}
}

func testUnknown(t *testing.T, h Harness) {
	if _, err := h.Provider.DescribeGroup(ctx(t), "nope-v001"); !errors.Is(err, fleet.ErrGroupNotFound) {
		t.Fatalf("describe unknown = %v", err)
	}
	if err := h.Provider.Resize(ctx(t), "nope-v001", 2); !errors.Is(err, fleet.ErrGroupNotFound) {
		t.Fatalf("resize unknown = %v", err)
	}
	if err := h.Provider.TerminateInstance(ctx(t), "nope-v001", "x"); !errors.Is(err, fleet.ErrGroupNotFound) {
		t.Fatalf("terminate in unknown group = %v", err)
	}
	t.Cleanup(func() { h.Provider.DestroyGroup(context.Background(), "suite-v005") })
	if _, err := h.Provider.CreateGroup(ctx(t), h.spec("suite", "suite-v005", 1)); err != nil {
		t.Fatal(err)
	}
	if err := h.Provider.TerminateInstance(ctx(t), "suite-v005", "no-such-instance"); !errors.Is(err, fleet.ErrInstanceNotFound) {
		t.Fatalf("terminate unknown instance = %v", err)
	}
}

func testList(t *testing.T, h Harness) {
	for _, g := range []fleet.GroupSpec{h.spec("suite", "suite-v006", 1), h.spec("other", "other-v001", 1)} {
		t.Cleanup(func() { h.Provider.DestroyGroup(context.Background(), g.Group) })
		if _, err := h.Provider.CreateGroup(ctx(t), g); err != nil {
			t.Fatal(err)
		}
	}
	gs, err := h.Provider.ListGroups(ctx(t), "other")
	if err != nil || len(gs) != 1 || gs[0].Spec.Group != "other-v001" {
		t.Fatalf("ListGroups(other) = %+v, %v", gs, err)
	}
	all, err := h.Provider.ListGroups(ctx(t), "")
	if err != nil || len(all) < 2 {
		t.Fatalf("ListGroups() = %d, %v", len(all), err)
	}
}

package spec_test

import (
	"errors"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

func TestApplyCreatedUpdatedUnchanged(t *testing.T) {
	s := testkit.Start(t)
	ctx := testkit.Context(t, 10*time.Second)
	kv, err := s.JS(t).KeyValue(ctx, topology.BucketServices)
	if err != nil {
		t.Fatal(err)
	}
	svc := spec.Service{Name: "hello", Owner: "team", Capacity: 1, Artifact: spec.Artifact{Command: []string{"hello"}}}
	for i, want := range []spec.Applied{spec.Created, spec.Unchanged} {
		got, err := spec.Apply(ctx, kv, svc)
		if err != nil || got != want {
			t.Fatalf("apply #%d = %q, %v; want %q", i, got, err, want)
		}
	}
	svc.Capacity = 4
	if got, err := spec.Apply(ctx, kv, svc); err != nil || got != spec.Updated {
		t.Fatalf("apply changed = %q, %v", got, err)
	}
	back, err := spec.Get(ctx, kv, "hello")
	if err != nil || back.Capacity != 4 {
		t.Fatalf("get = %+v, %v", back, err)
	}
	if _, err := spec.Get(ctx, kv, "nope"); !errors.Is(err, spec.ErrNotFound) {
		t.Fatalf("get missing = %v", err)
	}
	if _, err := spec.Apply(ctx, kv, spec.Service{Name: "Bad"}); err == nil {
		t.Fatal("invalid spec applied")
	}
	spec.Apply(ctx, kv, spec.Service{Name: "another", Owner: "x", Capacity: 1})
	all, err := spec.List(ctx, kv)
	if err != nil || len(all) != 2 || all[0].Name != "another" {
		t.Fatalf("list = %+v, %v", all, err)
	}
}

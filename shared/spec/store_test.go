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

// TestClaimsAreNormalized: a name another service has is refused in every
// spelling the router would route to it (issue 28: "other." and
// "other.localhost." were accepted beside a service named other), and a
// name that is no host name is refused as such.
func TestClaimsAreNormalized(t *testing.T) {
	s := testkit.Start(t)
	ctx := testkit.Context(t, 10*time.Second)
	kv, err := s.JS(t).KeyValue(ctx, topology.BucketServices)
	if err != nil {
		t.Fatal(err)
	}
	other := spec.Service{Name: "other", Owner: "beta", Capacity: 1, Artifact: spec.Artifact{Command: []string{"hello"}}, Hostnames: []string{"api.example.com"}}
	if _, err := spec.Apply(ctx, kv, other); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"other.", "other.localhost.", "OTHER", "ｏｔｈｅｒ", "api.example.com.", "API.Example.com"} {
		alpha := spec.Service{Name: "alpha", Owner: "alpha", Capacity: 1, Artifact: spec.Artifact{Command: []string{"hello"}}, Hostnames: []string{h}}
		if _, err := spec.Apply(ctx, kv, alpha); !errors.Is(err, spec.ErrClaimed) {
			t.Errorf("alpha claiming %q beside other: %v, want ErrClaimed", h, err)
		}
	}
	for _, h := range []string{"other..", "a_b.example.com", "."} {
		alpha := spec.Service{Name: "alpha", Owner: "alpha", Capacity: 1, Artifact: spec.Artifact{Command: []string{"hello"}}, Hostnames: []string{h}}
		if _, err := spec.Apply(ctx, kv, alpha); err == nil || errors.Is(err, spec.ErrClaimed) {
			t.Errorf("alpha claiming %q: %v, want it refused as no host name", h, err)
		}
	}
	if _, err := spec.Get(ctx, kv, "alpha"); !errors.Is(err, spec.ErrNotFound) {
		t.Errorf("a refused spec was stored: %v", err)
	}
}

package release

import (
	"errors"
	"testing"
	"time"
)

func TestGroupNameAndKeys(t *testing.T) {
	if g := GroupName("hello", 7); g != "hello-v007" {
		t.Fatalf("GroupName = %q", g)
	}
	if g := GroupName("hello", 1234); g != "hello-v1234" {
		t.Fatalf("GroupName = %q", g)
	}
	if LockKey("hello") == CounterKey("hello") || RecordKey("hello") == LockKey("hello") {
		t.Fatal("keys collide")
	}
}

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "req-12", "0f3a_B"} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "a*", string(make([]byte, 65))} {
		if err := ValidateID(bad); !errors.Is(err, ErrInvalidID) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestEnterFinal(t *testing.T) {
	var r Record
	r.Enter(PhaseAccepted, time.Now())
	if r.Outcome != "" || r.Phase.Final() {
		t.Fatal("accepted is not final")
	}
	r.Enter(PhaseRejected, time.Now())
	if r.Outcome != "rejected" || len(r.History) != 2 {
		t.Fatalf("record %+v", r)
	}
}

func TestParseGroup(t *testing.T) {
	for name, want := range map[string]struct {
		svc  string
		n    int
		role string
	}{
		"hello-v007":                    {"hello", 7, RoleProduction},
		"my-svc-v123":                   {"my-svc", 123, RoleProduction},
		"hello-v002-canary":             {"hello", 2, RoleCanary},
		"hello-v002-baseline":           {"hello", 2, RoleBaseline},
		RoleGroupName("a", 1, "canary"): {"a", 1, RoleCanary},
	} {
		svc, n, role, err := ParseGroup(name)
		if err != nil || svc != want.svc || n != want.n || role != want.role {
			t.Errorf("ParseGroup(%q) = %q %d %q %v", name, svc, n, role, err)
		}
	}
	for _, bad := range []string{"hello", "hello-v1", "Hello-v001", "hello-v001-blue", "hello-v001.x"} {
		if _, _, _, err := ParseGroup(bad); err == nil {
			t.Errorf("ParseGroup(%q) succeeded", bad)
		}
	}
}

// TestRollingSlotNames: a batch names its slots; a release by count, a
// batch past the plan and one before it name none.
func TestRollingSlotNames(t *testing.T) {
	r := Rolling{Batches: [][]int{{0, 1}, {2}}}
	if got := r.SlotNames("store", 0); len(got) != 2 || got[0] != "store-0" || got[1] != "store-1" {
		t.Fatalf("batch 0: %v", got)
	}
	if got := r.SlotNames("store", 2); got != nil {
		t.Fatalf("past the plan: %v", got)
	}
	if got := r.SlotNames("store", -1); got != nil {
		t.Fatalf("before the plan: %v", got)
	}
	r.ByCount = true
	if got := r.SlotNames("store", 0); got != nil {
		t.Fatalf("by count: %v", got)
	}
}

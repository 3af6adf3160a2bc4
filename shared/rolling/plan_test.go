package rolling

import (
	"fmt"
	"reflect"
	"testing"
)

func TestMaxUnavailable(t *testing.T) {
	for _, c := range []struct {
		in    string
		slots int
		want  int
	}{
		{"", 5, 1}, {"1", 5, 1}, {"2", 5, 2}, {"7", 5, 5}, // larger than the group: the whole group
		{"25%", 8, 2}, {"25%", 7, 1}, {"10%", 3, 1}, // rounded down, at least 1
		{"100%", 4, 4}, {"50%", 1, 1}, {"3", 0, 0},
	} {
		m, err := ParseMaxUnavailable(c.in)
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if got := m.Of(c.slots); got != c.want {
			t.Errorf("%q of %d slots = %d, want %d", c.in, c.slots, got, c.want)
		}
	}
	for _, bad := range []string{"0", "-1", "0%", "101%", "x", "1.5", "NaN%", "%"} {
		if _, err := ParseMaxUnavailable(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if m, _ := ParseMaxUnavailable("25%"); m.String() != "25%" {
		t.Errorf("String %q", m.String())
	}
}

func TestPlanAndReverse(t *testing.T) {
	slots := Slots("store", 5)
	if !reflect.DeepEqual(slots, []string{"store-0", "store-1", "store-2", "store-3", "store-4"}) {
		t.Fatalf("slots %v", slots)
	}
	plan := Plan(slots, 2)
	want := [][]string{{"store-0", "store-1"}, {"store-2", "store-3"}, {"store-4"}}
	if !reflect.DeepEqual(plan, want) {
		t.Fatalf("plan %v", plan)
	}
	if got := Plan(slots, 9); !reflect.DeepEqual(got, [][]string{slots}) {
		t.Fatalf("a batch larger than the group: %v", got)
	}
	if got := Plan[string](nil, 2); got != nil {
		t.Fatalf("no slots: %v", got)
	}
	// the second batch failed: batches 2 and 1 go back, last first
	back := Reverse(plan, 2)
	if !reflect.DeepEqual(back, [][]string{{"store-3", "store-2"}, {"store-1", "store-0"}}) {
		t.Fatalf("reverse %v", back)
	}
	if got := Reverse(plan, 0); len(got) != 0 {
		t.Fatalf("nothing done: %v", got)
	}
	if got := Reverse(plan, 9); len(got) != 3 {
		t.Fatalf("more than done: %v", got)
	}
	plan[0][0] = "changed" // the plan and its reverse share nothing
	if back[1][1] != "store-0" {
		t.Fatal("Reverse shares the plan's slices")
	}
}

// SlotOf spreads keys over the slots, each key always to the same slot.
func TestSlotOf(t *testing.T) {
	counts := make([]int, 4)
	for i := range 4000 {
		k := fmt.Sprintf("key-%d", i)
		s := SlotOf(k, 4)
		if s != SlotOf(k, 4) || s < 0 || s >= 4 {
			t.Fatalf("%q → %d", k, s)
		}
		counts[s]++
	}
	for i, c := range counts {
		if c < 800 || c > 1200 { // 1000 expected each; 6 standard deviations is ±165
			t.Errorf("slot %d got %d of 4000 keys: %v", i, c, counts)
		}
	}
	if SlotOf("x", 0) != 0 || SlotName("store", 2) != "store-2" {
		t.Error("no slots, or a slot's name")
	}
}

package fleet

import (
	"testing"

	"github.com/redblack/redblack/shared/discovery"
)

func TestDiff(t *testing.T) {
	i := func(id, state string) Instance { return Instance{ID: id, Group: "g", State: state} }
	before := map[string]Instance{"a": i("a", discovery.StateStarting), "b": i("b", discovery.StateUp), "c": i("c", discovery.StateUp)}
	after := map[string]Instance{"a": i("a", discovery.StateUp), "b": i("b", discovery.StateDown), "d": i("d", discovery.StateUp)}
	got := map[string]ChangeType{}
	n := 0
	for _, c := range Diff(before, after) {
		got[c.Instance.ID+":"+string(c.Type)] = c.Type
		n++
	}
	for _, want := range []string{"a:up", "b:down", "c:terminated", "d:started", "d:up"} {
		if _, ok := got[want]; !ok {
			t.Errorf("missing %s in %v", want, got)
		}
	}
	if n != 5 {
		t.Errorf("%d changes: %v", n, got)
	}
	if len(Diff(after, after)) != 0 {
		t.Error("changes between equal listings")
	}
}

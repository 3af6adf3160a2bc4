package cli

import (
	"testing"

	"github.com/redblack/redblack/shared/events"
)

// TestDescribeRollingBatch: a batch names its slots, or, rolled by count
// (aws), how many instances it replaces.
func TestDescribeRollingBatch(t *testing.T) {
	for _, c := range []struct {
		data events.RollingBatch
		want string
	}{
		{events.RollingBatch{Group: "store-v002", Previous: "store-v001", Batch: 2, Batches: 3, Slots: []string{"store-1"}, Count: 1},
			"batch 2/3 store-1: store-v001 → store-v002"},
		{events.RollingBatch{Group: "hello-v002", Previous: "hello-v001", Batch: 1, Batches: 2, Count: 2},
			"batch 1/2 2 instance(s): hello-v001 → hello-v002"},
	} {
		ev, err := events.New("test", events.RollingBatchStarted, "hello", "r-1", c.data)
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(ev); got != c.want {
			t.Errorf("describe: %q, want %q", got, c.want)
		}
	}
}

// TestDescribeTraffic: a canary's change of weights says the weights, not
// "active hello-v002 (was hello-v001)" as if the active group had changed
// (issue 29); a switch and a restore say what moved.
func TestDescribeTraffic(t *testing.T) {
	during := events.Traffic{Service: "hello", Active: "hello-v002", Previous: "hello-v001",
		Weights: map[string]int{"hello-v001": 0, "hello-v002": 900, "hello-v003-canary": 50, "hello-v003-baseline": 50}}
	for _, c := range []struct {
		kind events.Kind
		data events.Traffic
		want string
	}{
		{events.TrafficChanged, during, "weights hello-v002 900, hello-v003-baseline 50, hello-v003-canary 50"},
		{events.TrafficSwitched, events.Traffic{Active: "hello-v003", Previous: "hello-v002", Weights: map[string]int{"hello-v003": 1000}}, "active hello-v003 (was hello-v002)"},
		{events.TrafficRestored, events.Traffic{Active: "hello-v002", Weights: map[string]int{"hello-v002": 1000}}, "all traffic back on hello-v002"},
	} {
		ev, err := events.New("test", c.kind, "hello", "", c.data)
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(ev); got != c.want {
			t.Errorf("%s: %q, want %q", c.kind.Name, got, c.want)
		}
	}
}

// TestDescribeTrafficCommand: a command says what it asks, not its JSON.
func TestDescribeTrafficCommand(t *testing.T) {
	for _, c := range []struct {
		kind events.Kind
		data events.TrafficCommand
		want string
	}{
		{events.TrafficSet, events.TrafficCommand{Service: "hello", Weights: map[string]int{"hello-v001": 600, "hello-v002-canary": 200, "hello-v002-baseline": 200}},
			"set hello-v001 600, hello-v002-baseline 200, hello-v002-canary 200"},
		{events.TrafficSwitch, events.TrafficCommand{Service: "hello", Group: "hello-v002", Reason: "by hand"}, "switch to hello-v002: by hand"},
		{events.TrafficRestore, events.TrafficCommand{Service: "hello"}, "restore the previous group"},
	} {
		ev, err := events.New("test", c.kind, "hello", "", c.data)
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(ev); got != c.want {
			t.Errorf("%s: %q, want %q", c.kind.Name, got, c.want)
		}
	}
}

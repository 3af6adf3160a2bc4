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

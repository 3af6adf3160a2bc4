package analysis

import (
	"os"
	"testing"
)

// TestExampleTemplate: the template examples/hello ships parses and
// validates.
func TestExampleTemplate(t *testing.T) {
	f, err := os.Open("../../examples/hello/orders.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tm, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if tm.Name != "orders" || len(tm.Metrics) != 1 || tm.Metrics[0].Kind != KindRatio {
		t.Fatalf("%+v", tm)
	}
}

package aws

import (
	"testing"

	"github.com/redblack/redblack/shared/discovery"
)

func TestStateFromGroupAndTargets(t *testing.T) {
	cases := []struct{ lifecycle, health, target, want string }{
		{"InService", "Healthy", "", discovery.StateUp},
		{"InService", "Healthy", "healthy", discovery.StateUp},
		{"InService", "Healthy", "unused", discovery.StateUp},
		{"InService", "Healthy", "unhealthy", discovery.StateDown},
		{"InService", "Healthy", "draining", discovery.StateDown},
		{"InService", "Healthy", "initial", discovery.StateStarting},
		{"InService", "Unhealthy", "healthy", discovery.StateDown},
		{"Pending", "Healthy", "healthy", discovery.StateStarting},
		{"Terminating", "Healthy", "", discovery.StateTerminated},
		{"Detached", "Healthy", "", discovery.StateTerminated},
	}
	for _, c := range cases {
		if got := withTarget(State(c.lifecycle, c.health), c.target); got != c.want {
			t.Errorf("%s/%s/%s = %s, want %s", c.lifecycle, c.health, c.target, got, c.want)
		}
	}
}

package spec

import (
	"fmt"
	"math"
	"time"
)

// Autoscale makes the serving group track a target: the requests per
// second per instance in its own traffic samples, or its instances'
// average CPU. On the local provider the provisioner scales;
// on aws the Auto Scaling group's own target-tracking policy does.
type Autoscale struct {
	// Min and Max bound the group's size (Min ≥ 1, Max ≤ max_capacity;
	// defaults capacity and max_capacity).
	Min int `yaml:"min" json:"min"`
	Max int `yaml:"max" json:"max"`
	// TargetRequestsPerInstance: requests per second per instance.
	TargetRequestsPerInstance float64 `yaml:"target_requests_per_instance,omitempty" json:"target_requests_per_instance,omitempty"`
	// TargetCPU: the instances' average CPU, in percent of one core (on
	// local, from /proc; on aws, the ASG's ASGAverageCPUUtilization, in
	// percent of the instance's CPUs).
	TargetCPU float64 `yaml:"target_cpu,omitempty" json:"target_cpu,omitempty"`
	// Window is the span the load is measured over (default 30 s).
	Window Duration `yaml:"window,omitempty" json:"window,omitempty"`
	// ScaleUpCooldown and ScaleDownCooldown: the least time after a change
	// before the next one up (default 60 s) or down (default 5 m). A scale
	// down also waits a whole Window after any change, so that it is
	// judged on the new size's load.
	ScaleUpCooldown   Duration `yaml:"scale_up_cooldown,omitempty" json:"scale_up_cooldown,omitempty"`
	ScaleDownCooldown Duration `yaml:"scale_down_cooldown,omitempty" json:"scale_down_cooldown,omitempty"`
}

func (s *Service) defaultAutoscale() {
	a := s.Autoscale
	if a == nil {
		return
	}
	if a.Min == 0 {
		a.Min = s.Capacity
	}
	if a.Max == 0 {
		a.Max = s.MaxCapacity
	}
	if a.Window == 0 {
		a.Window = Duration(30 * time.Second)
	}
	if a.ScaleUpCooldown == 0 {
		a.ScaleUpCooldown = Duration(time.Minute)
	}
	if a.ScaleDownCooldown == 0 {
		a.ScaleDownCooldown = Duration(5 * time.Minute)
	}
}

func (s Service) validateAutoscale(bad func(field, format string, args ...any)) {
	a := s.Autoscale
	if a == nil {
		return
	}
	if a.Min < 1 || a.Min > a.Max {
		bad("autoscale.min", "%d: want 1..max (%d)", a.Min, a.Max)
	}
	if a.Max > s.MaxCapacity {
		bad("autoscale.max", "%d: want at most max_capacity (%d)", a.Max, s.MaxCapacity)
	}
	rps, cpu := a.TargetRequestsPerInstance, a.TargetCPU
	switch {
	case (rps != 0) == (cpu != 0):
		bad("autoscale", "one target: target_requests_per_instance or target_cpu")
	case rps < 0 || math.IsNaN(rps) || math.IsInf(rps, 0):
		bad("autoscale.target_requests_per_instance", "%v: want > 0", rps)
	case cpu < 0 || cpu > 100 || math.IsNaN(cpu):
		bad("autoscale.target_cpu", "%v: want 0..100 (percent)", cpu)
	}
	if a.Window.D() < time.Second || a.Window.D() > time.Hour {
		bad("autoscale.window", "%s: want 1s..1h", a.Window.D())
	}
	for f, d := range map[string]Duration{"scale_up_cooldown": a.ScaleUpCooldown, "scale_down_cooldown": a.ScaleDownCooldown} {
		if d.D() < time.Second || d.D() > 24*time.Hour {
			bad("autoscale."+f, "%s: want 1s..24h", d.D())
		}
	}
}

// Desired is the size that brings the load per instance to the target:
// load is the group's whole load (requests per second, or the sum of its
// instances' CPU percentages), rounded up and kept within min..max.
func (a Autoscale) Desired(load float64) int {
	target := a.TargetRequestsPerInstance
	if target == 0 {
		target = a.TargetCPU
	}
	if target <= 0 || math.IsNaN(load) || load < 0 {
		return a.Min
	}
	n := math.Ceil(load / target)
	if n > float64(a.Max) {
		return a.Max
	}
	return max(int(n), a.Min)
}

// String names the target, for events and logs.
func (a Autoscale) String() string {
	if a.TargetCPU != 0 {
		return fmt.Sprintf("%g%% CPU per instance", a.TargetCPU)
	}
	return fmt.Sprintf("%g requests/s per instance", a.TargetRequestsPerInstance)
}

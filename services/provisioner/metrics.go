package provisioner

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redblack/redblack/shared/prom"
)

// Collectors are the provisioner's metrics: the fleet events it published
// and, read from the provider at scrape time, its groups and instances.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.fleetEvents, fleetCollector{s}}
}

func newFleetEvents() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: prom.Namespace, Name: "provisioner_fleet_events_total",
		Help: "Fleet events the provisioner published (servergroup.created, instance.up, instance.replaced…)."}, []string{"service", "event"})
}

var (
	groupsDesc = prometheus.NewDesc(prom.Namespace+"_provisioner_groups", "Server groups the provider holds.", []string{"service"}, nil)
	instDesc   = prometheus.NewDesc(prom.Namespace+"_provisioner_instances", "Instances of the provider's groups, by state.",
		[]string{"service", "group", "state"}, nil)
)

// fleetCollector lists the provider's groups when scraped.
type fleetCollector struct{ s *Service }

// Describe sends the two descriptions.
func (c fleetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- groupsDesc; ch <- instDesc }

// Collect lists the provider's groups and counts their instances by state.
func (c fleetCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.s.listed.Load()
	if p == nil { // not running yet
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	groups, err := (*p).ListGroups(ctx, "")
	if err != nil {
		ch <- prometheus.NewInvalidMetric(groupsDesc, err)
		return
	}
	perService := map[string]int{}
	for _, g := range groups {
		perService[g.Spec.Service]++
		states := map[string]int{}
		for _, i := range g.Instances {
			states[i.State]++
		}
		for state, n := range states {
			ch <- prometheus.MustNewConstMetric(instDesc, prometheus.GaugeValue, float64(n), g.Spec.Service, g.Spec.Group, state)
		}
	}
	for svc, n := range perService {
		ch <- prometheus.MustNewConstMetric(groupsDesc, prometheus.GaugeValue, float64(n), svc)
	}
}

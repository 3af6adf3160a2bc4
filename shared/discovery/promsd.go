package discovery

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/natsx"
)

// PrometheusSDPath is where the admin port serves the instances to
// Prometheus (http_sd_configs).
const PrometheusSDPath = "/discovery/prometheus"

// sdGroup is one target group of Prometheus's HTTP service discovery.
type sdGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// PrometheusSD serves every instance in the bucket as a target of
// Prometheus's HTTP service discovery, labelled service, group, version
// and instance_id (one target group per instance), so that a template's
// queries can select a group by {{group}}. Instances not up are listed
// too: Prometheus finds out whether they answer.
func PrometheusSD(kv jetstream.KeyValue) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		out := []sdGroup{}
		entries, err := natsx.Entries(ctx, kv)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		for _, e := range entries {
			en, err := Decode(e.Value())
			if err != nil || en.Address == "" {
				continue
			}
			out = append(out, sdGroup{Targets: []string{en.Address}, Labels: map[string]string{
				"service": en.Service, "group": en.Group, "version": en.Version, "instance_id": en.ID}})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Labels["instance_id"] < out[j].Labels["instance_id"] })
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

package prom

import (
	"sort"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// Remote is a prometheus.Gatherer of another process's /metrics: what it
// scrapes there, each series with Labels added (the process it came
// from), so that the metrics of several processes of one program can be
// served together (prometheus.Gatherers) without colliding.
type Remote struct {
	URL    string
	Labels map[string]string
}

// Gather scrapes URL and labels what it read.
func (r Remote) Gather() ([]*dto.MetricFamily, error) {
	fams, err := Scrape(r.URL)
	if err != nil {
		return nil, err
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	return AddLabels(out, r.Labels), nil
}

// AddLabels adds labels to every series of fams (in place) and returns
// them.
func AddLabels(fams []*dto.MetricFamily, labels map[string]string) []*dto.MetricFamily {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, k := range names {
				m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(k), Value: proto.String(labels[k])})
			}
			sort.Slice(m.Label, func(i, j int) bool { return m.Label[i].GetName() < m.Label[j].GetName() })
		}
	}
	return fams
}

// Package metrics is the traffic sample the router publishes on
// metrics.<service>.<group> every interval, for the canary judge and the
// watchdog: request counts by class, connection errors, retries and a
// latency histogram with fixed log buckets.
package metrics

import (
	"encoding/json"
	"fmt"
	"time"
)

// Sample is one router's counts for one server group over one interval.
type Sample struct {
	Service    string    `json:"service"`
	Group      string    `json:"group"`
	Router     string    `json:"router"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Requests   uint64    `json:"requests"`
	Status2xx  uint64    `json:"2xx"`
	Status3xx  uint64    `json:"3xx,omitempty"`
	Status4xx  uint64    `json:"4xx"`
	Status5xx  uint64    `json:"5xx"`
	ConnErrors uint64    `json:"conn_errors"`
	Retries    uint64    `json:"retries"`
	// Rescued: of the requests that failed here (5xx or connection
	// errors, counted above as they were), those the router answered from
	// the fallback group instead (X-Redblack-Fallback).
	Rescued uint64 `json:"rescued,omitempty"`
	// BucketsMicros are the histogram's upper bounds in µs; Latency has one
	// more count, for +Inf.
	BucketsMicros []int64  `json:"buckets_us"`
	Latency       []uint64 `json:"latency"`
	LatencySumNs  uint64   `json:"latency_sum_ns"`
	// FirstError is the router's timestamp of the group's first 5xx or
	// failed request ever (zero: none yet).
	FirstError time.Time `json:"first_error,omitempty"`
	// Instances break the counts down by the instance that served them
	// (the router's backends with requests in the window), for a judge
	// that must not blame the version for an instance's placement. Absent
	// when the publisher cannot tell them apart (CloudWatch) or the group
	// had more than MaxInstances with traffic.
	Instances []InstanceSample `json:"instances,omitempty"`
}

// MaxInstances bounds a sample's breakdown by instance.
const MaxInstances = 32

// InstanceSample is one instance's share of a sample: its requests, its
// errors (5xx and connection errors) and its latency histogram on the
// sample's bounds, sparse: (bucket index, count) pairs by increasing index.
type InstanceSample struct {
	ID       string      `json:"id"`
	Requests uint64      `json:"requests"`
	Errors   uint64      `json:"errors"`
	Latency  [][2]uint64 `json:"latency,omitempty"`
}

// Histogram expands the instance's sparse histogram to n counts (the
// sample's, one more than its bounds); pairs past n are ignored.
func (i InstanceSample) Histogram(n int) []uint64 {
	out := make([]uint64, n)
	for _, p := range i.Latency {
		if p[0] < uint64(n) {
			out[p[0]] += p[1]
		}
	}
	return out
}

// Sparse makes the sparse form of a histogram: its non-zero counts.
func Sparse(counts []uint64) [][2]uint64 {
	var out [][2]uint64
	for i, c := range counts {
		if c > 0 {
			out = append(out, [2]uint64{uint64(i), c})
		}
	}
	return out
}

// Errors are the requests that failed: 5xx and connection errors.
func (s Sample) Errors() uint64 { return s.Status5xx + s.ConnErrors }

// Encode returns the sample's JSON.
func (s Sample) Encode() []byte {
	b, _ := json.Marshal(s)
	return b
}

// Decode reads a sample.
func Decode(b []byte) (Sample, error) {
	var s Sample
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("metrics: %w", err)
	}
	return s, nil
}

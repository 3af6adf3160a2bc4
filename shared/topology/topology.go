// Package topology defines redblack's JetStream streams and key-value buckets
// and creates them idempotently, so every service and every test agrees on
// them.
package topology

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Streams.
const (
	StreamReleases   = "RELEASES"   // release.>: the audit log
	StreamFleet      = "FLEET"      // fleet.>, chaos.>
	StreamMetrics    = "METRICS"    // metrics.>: short-lived samples
	StreamAdvisories = "ADVISORIES" // max-deliveries and terminated advisories
	StreamDLQ        = "DLQ"        // dlq.>: the originals of messages given up on
)

// KV buckets, each written by its owner only.
const (
	BucketServices  = "services"  // service specs (the CLI)
	BucketReleases  = "releases"  // release records and per-service locks (canary)
	BucketRoutes    = "routes"    // routing tables (router)
	BucketInstances = "instances" // discovery (provisioner)
	BucketChaos     = "chaos"     // Chaos Monkey's config and kill records (chaos)
	BucketAnalysis  = "analysis"  // analysis templates by team (canary)
)

// Advisory subjects captured for the dead-letter queue.
const (
	AdvisoryMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"
	AdvisoryTerminated    = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>"
)

// Options are the knobs of the topology.
type Options struct {
	// ReleasesMaxAge is how long the audit log keeps events (default 90 days).
	ReleasesMaxAge time.Duration
	// FleetMaxAge is how long fleet and chaos events are kept (default 30 days).
	FleetMaxAge time.Duration
	// MetricsMaxAge is how long metric samples are kept (default 15 minutes).
	MetricsMaxAge time.Duration
	// MetricsMaxBytes bounds METRICS by size too (default 256 MiB): the
	// oldest samples go first.
	MetricsMaxBytes int64
	// Duplicates is the de-duplication window of Nats-Msg-Id (default 10 minutes).
	Duplicates time.Duration
	// InstanceTTL expires discovery entries not refreshed (default 15 s).
	InstanceTTL time.Duration
	// Replicas of every stream and bucket; 0 (the default) is the size of
	// the cluster the connection is on, at most 3 (ReplicasFor): 1 on one
	// machine, 3 on a cluster.
	Replicas int
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		ReleasesMaxAge:  90 * 24 * time.Hour,
		FleetMaxAge:     30 * 24 * time.Hour,
		MetricsMaxAge:   15 * time.Minute,
		MetricsMaxBytes: 256 << 20,
		Duplicates:      10 * time.Minute,
		InstanceTTL:     15 * time.Second,
	}
}

// Streams returns the configuration of every stream.
func Streams(o Options) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{
		{
			Name: StreamReleases, Description: "redblack audit log: every release event",
			Subjects: []string{"release.>"}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy,
			MaxAge: o.ReleasesMaxAge, Duplicates: o.Duplicates, DenyDelete: true, DenyPurge: true, Replicas: o.Replicas,
		},
		{
			Name: StreamFleet, Description: "redblack fleet and chaos events and commands",
			Subjects: []string{"fleet.>", "chaos.>"}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy,
			MaxAge: o.FleetMaxAge, Duplicates: o.Duplicates, Replicas: o.Replicas,
		},
		{
			Name: StreamMetrics, Description: "redblack traffic metric samples",
			Subjects: []string{"metrics.>"}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy,
			MaxAge: o.MetricsMaxAge, MaxBytes: o.MetricsMaxBytes, Duplicates: min(o.Duplicates, o.MetricsMaxAge), Replicas: o.Replicas,
		},
		{
			Name: StreamAdvisories, Description: "JetStream advisories of messages given up on",
			Subjects: []string{AdvisoryMaxDeliveries, AdvisoryTerminated}, Storage: jetstream.FileStorage,
			MaxAge: o.FleetMaxAge, Duplicates: o.Duplicates, Replicas: o.Replicas,
		},
		{
			Name: StreamDLQ, Description: "redblack dead letters: originals with the reason",
			Subjects: []string{"dlq.>"}, Storage: jetstream.FileStorage,
			MaxAge: o.FleetMaxAge, Duplicates: o.Duplicates, Replicas: o.Replicas,
		},
	}
}

// StreamNames are the names of every stream, the buckets' (KV_<bucket>)
// included.
func StreamNames(o Options) []string {
	var out []string
	for _, sc := range Streams(o) {
		out = append(out, sc.Name)
	}
	for _, kc := range Buckets(o) {
		out = append(out, "KV_"+kc.Bucket)
	}
	return out
}

// Buckets returns the configuration of every KV bucket.
func Buckets(o Options) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: BucketServices, Description: "service specs", History: 10, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: BucketReleases, Description: "release records and per-service locks", History: 5, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: BucketRoutes, Description: "routing tables", History: 5, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: BucketAnalysis, Description: "analysis templates: a team's own metrics for the judge", History: 5, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		{Bucket: BucketChaos, Description: "Chaos Monkey: global config and the last kill of each unit", History: 5, Storage: jetstream.FileStorage, Replicas: o.Replicas},
		// an entry that expires leaves a delete marker, so every watcher (the
		// router) sees the instance go, not only a new reader
		{Bucket: BucketInstances, Description: "discovery: instances by service and group", History: 1, TTL: o.InstanceTTL, LimitMarkerTTL: o.InstanceTTL, Storage: jetstream.FileStorage, Replicas: o.Replicas},
	}
}

// on resolves the replicas for the connection's cluster.
func (o Options) on(js jetstream.JetStream) Options {
	if o.Replicas <= 0 {
		o.Replicas = ReplicasFor(js.Conn())
	}
	return o
}

// Prepare creates the streams and buckets that are missing and leaves the
// others as they are: what a service runs at start. It never updates a
// stream, so an operator's replicas and limits stand, and a service needs
// no right to change the topology (`up`, as the admin, runs Ensure).
func Prepare(ctx context.Context, js jetstream.JetStream, o Options) error {
	o = o.on(js)
	for _, sc := range Streams(o) {
		if _, err := js.Stream(ctx, sc.Name); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("topology: stream %s: %w", sc.Name, err)
		}
		if _, err := js.CreateStream(ctx, sc); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("topology: stream %s is missing and could not be created (run `redblack up`, or `redblack topology ensure` as the admin): %w", sc.Name, err)
		}
	}
	for _, kc := range Buckets(o) {
		if _, err := js.KeyValue(ctx, kc.Bucket); err == nil {
			continue
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("topology: bucket %s: %w", kc.Bucket, err)
		}
		if _, err := js.CreateKeyValue(ctx, kc); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("topology: bucket %s is missing and could not be created (run `redblack up`, or `redblack topology ensure` as the admin): %w", kc.Bucket, err)
		}
	}
	return nil
}

// Durable consumers of the services, by name. One list, so that the
// permissions of teams and auditors can deny them: a client that could pull
// from a service's durable would take its deliveries.
const (
	DurableCanaryIntake        = "canary-intake"
	DurableCanaryPhase         = "canary-phase"
	DurableRouterReleases      = "router-releases"
	DurableRouterCommands      = "router-commands"
	DurableProvisionerCommands = "provisioner-commands"
	DurableProvisionerReleases = "provisioner-releases"
	DurableWatchdogBake        = "watchdog-bake"
	DurableDeadLetter          = "deadletter"
)

// Durables maps each stream to the durable consumers the services hold on it.
var Durables = map[string][]string{
	StreamReleases:   {DurableCanaryIntake, DurableCanaryPhase, DurableRouterReleases, DurableProvisionerReleases, DurableWatchdogBake},
	StreamFleet:      {DurableRouterCommands, DurableProvisionerCommands},
	StreamAdvisories: {DurableDeadLetter},
}

package topology

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Row is one field of one stream or bucket: what exists against what
// redblack wants, and what Reconcile does about it.
type Row struct {
	Kind   string // "stream" or "bucket"
	Name   string
	Field  string // "exists", "replicas", "max_age", "subjects", …
	Has    string // what exists ("-" when missing)
	Wants  string
	Action string // Ok, Create, Raise, Keep, Set
}

// Actions of a row.
const (
	ActionOk     = "ok"                  // as wanted
	ActionCreate = "create"              // missing: created as wanted
	ActionRaise  = "raise"               // below what redblack needs: raised
	ActionKeep   = "keep (operator's)"   // above what redblack needs (or unlimited): kept
	ActionSet    = "set (redblack owns)" // a field redblack owns exactly: set
)

// field is one merge rule: it reads the field, and applies the wanted value
// to the existing config when the rule says so.
type field struct {
	name string
	get  func(*jetstream.StreamConfig) string
	// merge returns the action, changing have when it raises or sets
	merge func(have, want *jetstream.StreamConfig) string
}

// atLeast raises a limit to the wanted value and keeps a larger one; 0 (or
// -1) is unlimited, larger than any, and a wanted 0 is no need at all.
func atLeast[T int | int64 | time.Duration](name string, p func(*jetstream.StreamConfig) *T) field {
	return field{name: name,
		get: func(c *jetstream.StreamConfig) string { return fmt.Sprint(*p(c)) },
		merge: func(have, want *jetstream.StreamConfig) string {
			h, w := *p(have), *p(want)
			switch {
			case h == w:
				return ActionOk
			case h <= 0 || w <= 0: // unlimited, or no need of redblack's
				return ActionKeep
			case h > w:
				return ActionKeep
			default:
				*p(have) = w
				return ActionRaise
			}
		}}
}

// exactly sets a field redblack's behaviour depends on.
func exactly[T comparable](name string, p func(*jetstream.StreamConfig) *T) field {
	return field{name: name,
		get: func(c *jetstream.StreamConfig) string { return fmt.Sprint(*p(c)) },
		merge: func(have, want *jetstream.StreamConfig) string {
			if *p(have) == *p(want) {
				return ActionOk
			}
			*p(have) = *p(want)
			return ActionSet
		}}
}

var (
	replicas = atLeast("replicas", func(c *jetstream.StreamConfig) *int { return &c.Replicas })
	subjects = field{name: "subjects",
		get: func(c *jetstream.StreamConfig) string { return fmt.Sprint(c.Subjects) },
		merge: func(have, want *jetstream.StreamConfig) string {
			action := ActionOk
			for _, s := range want.Subjects {
				if !slices.Contains(have.Subjects, s) {
					have.Subjects = append(have.Subjects, s)
					action = ActionRaise
				}
			}
			return action
		}}
	// the streams' retention is a floor: an operator may keep more
	streamFields = []field{subjects, replicas,
		atLeast("max_age", func(c *jetstream.StreamConfig) *time.Duration { return &c.MaxAge }),
		atLeast("max_bytes", func(c *jetstream.StreamConfig) *int64 { return &c.MaxBytes }),
		atLeast("duplicates", func(c *jetstream.StreamConfig) *time.Duration { return &c.Duplicates }),
		exactly("deny_delete", func(c *jetstream.StreamConfig) *bool { return &c.DenyDelete }),
		exactly("deny_purge", func(c *jetstream.StreamConfig) *bool { return &c.DenyPurge }),
	}
	// a bucket's TTL is how discovery expires instances: exact
	bucketFields = []field{replicas,
		atLeast("history", func(c *jetstream.StreamConfig) *int64 { return &c.MaxMsgsPerSubject }),
		exactly("ttl", func(c *jetstream.StreamConfig) *time.Duration { return &c.MaxAge }),
		exactly("allow_msg_ttl", func(c *jetstream.StreamConfig) *bool { return &c.AllowMsgTTL }),
		exactly("marker_ttl", func(c *jetstream.StreamConfig) *time.Duration { return &c.SubjectDeleteMarkerTTL }),
		exactly("allow_direct", func(c *jetstream.StreamConfig) *bool { return &c.AllowDirect }),
	}
)

// Check compares what exists with what o wants, field by field, and says
// what Reconcile would do. It changes nothing.
func Check(ctx context.Context, js jetstream.JetStream, o Options) ([]Row, error) {
	rows, _, err := plan(ctx, js, o)
	return rows, err
}

// update is a change Reconcile makes.
type update struct {
	create bool
	stream *jetstream.StreamConfig
	bucket *jetstream.KeyValueConfig
}

func plan(ctx context.Context, js jetstream.JetStream, o Options) ([]Row, []update, error) {
	o = o.on(js)
	var rows []Row
	var ups []update
	compare := func(kind, name string, fields []field, have, want *jetstream.StreamConfig) bool {
		changed := false
		for _, f := range fields {
			before := f.get(have)
			a := f.merge(have, want)
			rows = append(rows, Row{Kind: kind, Name: name, Field: f.name, Has: before, Wants: f.get(want), Action: a})
			changed = changed || a == ActionRaise || a == ActionSet
		}
		if have.MaxAge > 0 && have.Duplicates > have.MaxAge { // the server's rule
			have.Duplicates = have.MaxAge
		}
		return changed
	}
	for _, sc := range Streams(o) {
		s, err := js.Stream(ctx, sc.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			rows = append(rows, Row{Kind: "stream", Name: sc.Name, Field: "exists", Has: "-", Wants: "yes", Action: ActionCreate})
			ups = append(ups, update{create: true, stream: &sc})
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("topology: stream %s: %w", sc.Name, err)
		}
		have := s.CachedInfo().Config
		if compare("stream", sc.Name, streamFields, &have, &sc) {
			ups = append(ups, update{stream: &have})
		}
	}
	for _, kc := range Buckets(o) {
		s, err := js.Stream(ctx, "KV_"+kc.Bucket)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			rows = append(rows, Row{Kind: "bucket", Name: kc.Bucket, Field: "exists", Has: "-", Wants: "yes", Action: ActionCreate})
			ups = append(ups, update{create: true, bucket: &kc})
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("topology: bucket %s: %w", kc.Bucket, err)
		}
		have := s.CachedInfo().Config
		want := jetstream.StreamConfig{Replicas: kc.Replicas, MaxMsgsPerSubject: int64(kc.History), MaxAge: kc.TTL,
			AllowMsgTTL: kc.LimitMarkerTTL > 0, SubjectDeleteMarkerTTL: kc.LimitMarkerTTL, AllowDirect: !ConsistentReads[kc.Bucket]}
		if compare("bucket", kc.Bucket, bucketFields, &have, &want) {
			ups = append(ups, update{stream: &have})
		}
	}
	return rows, ups, nil
}

// Ensure is Reconcile without the report.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options) error {
	_, err := Reconcile(ctx, js, o)
	return err
}

// Reconcile makes the topology what redblack needs without taking from an
// operator: it creates what is missing, raises what is below redblack's
// needs (replicas, retention, subjects), sets the few fields redblack's
// behaviour depends on exactly (the audit log's deny-delete and
// deny-purge, the discovery bucket's TTL), and keeps every limit an
// operator raised. `up` runs it as the admin; it returns what it did.
func Reconcile(ctx context.Context, js jetstream.JetStream, o Options) ([]Row, error) {
	rows, ups, err := plan(ctx, js, o)
	if err != nil {
		return nil, err
	}
	for _, u := range ups {
		switch {
		case u.create && u.stream != nil:
			if err := whilePlacing(ctx, func() error {
				_, err := js.CreateStream(ctx, *u.stream)
				return err
			}); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return nil, fmt.Errorf("topology: create stream %s: %w", u.stream.Name, err)
			}
		case u.create:
			if err := whilePlacing(ctx, func() error {
				_, err := js.CreateKeyValue(ctx, *u.bucket)
				return err
			}); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
				return nil, fmt.Errorf("topology: create bucket %s: %w", u.bucket.Bucket, err)
			}
			if err := consistent(ctx, js, u.bucket.Bucket); err != nil {
				return nil, err
			}
		default:
			if err := whilePlacing(ctx, func() error {
				_, err := js.UpdateStream(ctx, *u.stream)
				return err
			}); err != nil {
				return nil, fmt.Errorf("topology: update stream %s: %w", u.stream.Name, err)
			}
		}
	}
	return rows, nil
}

// PlacementWait bounds how long Reconcile tries again a create or update
// the cluster refuses for want of peers: a cluster just formed has a meta
// leader a moment before it counts every node online ("no suitable peers
// for placement, peer offline").
const PlacementWait = 30 * time.Second

// whilePlacing runs op, and again every 250 ms for up to PlacementWait
// while the cluster has no peers to place it on.
func whilePlacing(ctx context.Context, op func() error) error {
	deadline := time.Now().Add(PlacementWait)
	for {
		err := op()
		var api *jetstream.APIError
		if err == nil || !errors.As(err, &api) || api.ErrorCode != jsClusterNoPeers || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// jsClusterNoPeers is the server's error code for "no suitable peers for
// placement" (JSClusterNoPeersErrF).
const jsClusterNoPeers jetstream.ErrorCode = 10005

// ConsistentReads are the buckets whose reads go to the stream's leader,
// not to any replica (no direct gets): a replica catching up after its
// node's restart answers a direct get with what it has, so a release
// record just created could read as "not found" there, and a step be
// dropped. The release records, locks, counters and leases are read to act
// on; the other buckets' readers only wait or retry on a stale read.
var ConsistentReads = map[string]bool{BucketReleases: true}

// consistent turns direct gets off for a bucket of ConsistentReads (a new
// bucket has them on).
func consistent(ctx context.Context, js jetstream.JetStream, bucket string) error {
	if !ConsistentReads[bucket] {
		return nil
	}
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return fmt.Errorf("topology: bucket %s: %w", bucket, err)
	}
	c := s.CachedInfo().Config
	if !c.AllowDirect {
		return nil
	}
	c.AllowDirect = false
	if _, err := js.UpdateStream(ctx, c); err != nil {
		return fmt.Errorf("topology: bucket %s: direct gets off: %w", bucket, err)
	}
	return nil
}

// ReplicasFor is the replicas a connection's cluster can hold: 1 on a
// single server, else the servers it knows of, at most 3.
func ReplicasFor(nc interface {
	ConnectedClusterName() string
	Servers() []string
}) int {
	if nc.ConnectedClusterName() == "" {
		return 1
	}
	return max(1, min(3, len(nc.Servers())))
}

// AwaitLeaders waits until every stream and bucket of the topology has a
// cluster leader, or ctx ends: on a cluster just started or that just lost
// a node, writes fail until then.
func AwaitLeaders(ctx context.Context, js jetstream.JetStream) error {
	for {
		led, all := 0, 0
		for _, name := range StreamNames(DefaultOptions()) {
			all++
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			if s, err := js.Stream(sctx, name); err == nil && s.CachedInfo().Cluster != nil && s.CachedInfo().Cluster.Leader != "" {
				led++
			}
			cancel()
		}
		if led == all {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d streams have a leader: %w", led, all, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Package intake is the front door of every release: it validates requests
// published to release.<service>.requested, takes the per-service lock so at
// most one release of a service is in flight, names the release's server
// group and emits accepted — or rejected, with the reason and the field at
// fault. A poison message is rejected and acked once.
package intake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// Source is the CloudEvents source of the intake's events.
const Source = "redblack/canary/intake"

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// Durable is the name of the intake's consumer.
const Durable = topology.DurableCanaryIntake

// FilterSubject selects release requests of every service.
const FilterSubject = "release.*.requested"

var versionRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Intake decides on release requests.
type Intake struct {
	js       jetstream.JetStream
	services jetstream.KeyValue
	releases release.Store
	routes   jetstream.KeyValue
	log      zerolog.Logger
	now      func() time.Time
}

// New binds the intake to the services and releases buckets.
func New(ctx context.Context, js jetstream.JetStream, log zerolog.Logger, now func() time.Time) (*Intake, error) {
	services, err := natsx.Bucket(ctx, js, topology.BucketServices)
	if err != nil {
		return nil, fmt.Errorf("intake: bucket %s: %w", topology.BucketServices, err)
	}
	releases, err := natsx.Bucket(ctx, js, topology.BucketReleases)
	if err != nil {
		return nil, fmt.Errorf("intake: bucket %s: %w", topology.BucketReleases, err)
	}
	rts, err := natsx.Bucket(ctx, js, topology.BucketRoutes)
	if err != nil {
		return nil, fmt.Errorf("intake: bucket %s: %w", topology.BucketRoutes, err)
	}
	return &Intake{js: js, services: services, releases: release.Store{KV: releases}, routes: rts, log: log, now: now}, nil
}

// Start runs the intake's durable consumer until the returned consumer is stopped.
func (in *Intake) Start(ctx context.Context) (*natsx.Consumer, error) {
	return natsx.Consume(ctx, in.js, natsx.ConsumerSpec{
		Stream: topology.StreamReleases, Durable: Durable, FilterSubjects: []string{FilterSubject},
		MaxDeliver: 10, AckWait: 10 * time.Second,
	}, in.Handle, in.log)
}

// rejection is a request refused for a reason a retry cannot change.
type rejection struct {
	field, reason, inProgress string
}

func (r *rejection) Error() string { return r.field + ": " + r.reason }

func reject(field, format string, args ...any) *rejection {
	return &rejection{field: field, reason: fmt.Sprintf(format, args...)}
}

// request is a decoded, not yet validated, request.
type request struct {
	service   string // from the subject
	releaseID string
	body      events.Requested
	seq       uint64 // the request's stream sequence
}

// Handle decides on one message. It returns an error only for transient
// failures (NATS unavailable), which are retried; every rejection is
// published and the message acked.
func (in *Intake) Handle(ctx context.Context, msg jetstream.Msg) error {
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	req, rej := parse(msg.Subject(), msg.Data(), seq)
	req.seq = seq
	if rej == nil {
		var err error
		rej, err = in.decide(ctx, &req)
		if errors.Is(err, errDecided) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	if rej != nil {
		return in.publishRejection(ctx, req, rej)
	}
	return nil
}

// parse decodes and checks what can be checked without state.
func parse(subject string, data []byte, seq uint64) (request, *rejection) {
	req := request{releaseID: fmt.Sprintf("req-%d", seq)}
	p, err := subjects.Parse(subject)
	if err != nil || p.Domain != subjects.DomainRelease || p.Event != "requested" {
		req.service = subjects.Invalid
		return req, reject("subject", "%q is not release.<service>.requested", subject)
	}
	if err := subjects.ValidateService(p.Service); err != nil {
		req.service = subjects.Invalid
		return req, reject("subject", "subject token %q is not a valid service name: want [a-z][a-z0-9-]{0,30}", printable(p.Service))
	}
	req.service = p.Service
	if len(data) > MaxBody {
		return req, reject("body", "body is %d bytes; at most %d", len(data), MaxBody)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return req, reject("body", "body is empty; want a JSON release request such as {\"version\":\"v2\"}")
	}
	if !utf8.Valid(data) || !json.Valid(data) {
		return req, reject("body", "body is not valid JSON")
	}
	raw := data
	if events.LooksLikeEvent(data) {
		ev, err := events.Decode(data)
		if err != nil {
			return req, reject("body", "not a valid CloudEvent: %v", err)
		}
		if ev.Type != events.ReleaseRequested.Type() {
			return req, reject("type", "CloudEvent type %q; want %q", ev.Type, events.ReleaseRequested.Type())
		}
		id := ev.ReleaseID
		if id == "" {
			id = ev.ID
		}
		if err := release.ValidateID(id); err != nil {
			return req, reject("id", "%v", err)
		}
		req.releaseID = id
		raw = ev.Data
		if len(bytes.TrimSpace(raw)) == 0 {
			return req, reject("data", "CloudEvent has no data")
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req.body); err != nil {
		return req, jsonRejection(err)
	}
	if dec.More() {
		return req, reject("body", "trailing data after the JSON request")
	}
	b := req.body
	if b.Service != "" && b.Service != req.service {
		return req, reject("service", "body names service %q but the subject names %q", printable(b.Service), req.service)
	}
	if !versionRE.MatchString(b.Version) {
		return req, reject("version", "version %q: want 1-64 characters of [A-Za-z0-9._-]", printable(b.Version))
	}
	if b.Duration != "" {
		d, err := time.ParseDuration(b.Duration)
		if !b.Calibrate {
			return req, reject("duration", "duration is for a calibration only (calibrate: true)")
		}
		if err != nil || d < time.Second || d > 24*time.Hour {
			return req, reject("duration", "duration %q: want 1s..24h", printable(b.Duration))
		}
	}
	return req, nil
}

// jsonRejection names the field a JSON decoding error is about.
func jsonRejection(err error) *rejection {
	msg := err.Error()
	if i := strings.Index(msg, "unknown field "); i >= 0 {
		field := strings.Trim(msg[i+len("unknown field "):], `"`)
		return reject(field, "unknown field %q", field)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field == "" {
		return reject("body", "body is not a JSON release request: want an object, got %s", te.Value)
	}
	if errors.As(err, &te) {
		return reject(te.Field, "%s must be %s, not %s", te.Field, te.Type, te.Value)
	}
	return reject("body", "body is not a JSON release request: %v", err)
}

// printable shortens and quotes what a user sent, for a reason string.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// decide checks the request against the service's spec and takes the lock.
// A rejection is returned as *rejection; an error is transient.
func (in *Intake) decide(ctx context.Context, req *request) (*rejection, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	log := in.log.With().Str(logging.FieldService, req.service).Str(logging.FieldRelease, req.releaseID).Logger()
	svc, err := spec.Get(ctx, in.services, req.service)
	if errors.Is(err, spec.ErrNotFound) {
		return reject("service", "unknown service %q: apply its spec first (redblack service apply -f FILE)", req.service), nil
	}
	if err != nil {
		return nil, err
	}
	artifact, err := svc.Resolve(req.body.Artifact, req.body.Version)
	if err != nil {
		return reject("artifact", "artifact not allowed by the spec of %s (provider %q): %v", req.service, svc.Provider, err), nil
	}

	if rej, err := in.replayed(ctx, req); rej != nil || err != nil {
		return rej, err
	}
	// the group with the traffic is the release's previous one: the route's
	// Active, whoever put it there (a release, or a switch by hand)
	route, _, err := routes.Get(ctx, in.routes, req.service)
	if err != nil && !errors.Is(err, routes.ErrNotFound) {
		return nil, err
	}
	active := route.Active
	if req.body.Calibrate && active == "" {
		return reject("calibrate", "nothing of %s runs yet to calibrate the judge against: release it first", req.service), nil
	}
	if req.body.Calibrate && svc.Strategy.Type == spec.StrategyRolling {
		return reject("calibrate", "%s is released by rolling: a calibration runs two groups of the production version, and a stateful service's slots run once each", req.service), nil
	}
	rec := release.Record{
		ID: req.releaseID, Service: req.service, Version: req.body.Version,
		Previous: active, Artifact: artifact, RequestedBy: req.body.RequestedBy,
		Calibration: req.body.Calibrate, RequestSeq: req.seq, Strategy: svc.Strategy.Type,
	}
	if req.body.Duration != "" {
		rec.CanaryDuration, _ = time.ParseDuration(req.body.Duration) // checked in parse
	}
	acc, err := in.releases.Accept(ctx, rec, in.now())
	if acc.Freed != nil {
		in.log.Warn().Str(logging.FieldService, req.service).Str(logging.FieldRelease, acc.Freed.Release).Time("since", acc.Freed.Since).Msg("freed a lock whose release has no record")
	}
	var busy *release.Busy
	if errors.As(err, &busy) {
		r := reject("service", "%s", busy.Error())
		r.inProgress = busy.Lock.Release
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	rec = acc.Record
	ev, err := events.NewWithID(events.DerivedID(req.releaseID, events.ReleaseAccepted, 0), Source,
		events.ReleaseAccepted, req.service, req.releaseID, events.Accepted{
			Service: req.service, Version: req.body.Version, Group: rec.Group, Sequence: rec.Sequence,
			Artifact: artifact, Previous: active,
		})
	if err != nil {
		return nil, natsx.Permanent(err)
	}
	if _, err := natsx.Publish(ctx, in.js, events.ReleaseAccepted.Subject(req.service), ev); err != nil {
		return nil, err
	}
	log.Info().Str(logging.FieldServerGroup, rec.Group).Str("version", req.body.Version).Msg("release accepted")
	return nil, nil
}

// replayed refuses a release id that already has a record, unless this
// release holds the lock (then it is a redelivery of a request in progress).
func (in *Intake) replayed(ctx context.Context, req *request) (*rejection, error) {
	rec, _, err := in.releases.Get(ctx, req.releaseID)
	if errors.Is(err, release.ErrNotFound) {
		return nil, nil
	}
	if err != nil && !errors.Is(err, release.ErrCorrupt) {
		return nil, fmt.Errorf("intake: read record %s: %w", req.releaseID, err)
	}
	lk, _, err := in.releases.Lock(ctx, req.service)
	switch {
	case err == nil && lk.Release == req.releaseID:
		return nil, nil // in flight: go on, idempotently
	case err != nil && !errors.Is(err, release.ErrNotFound) && !errors.Is(err, release.ErrCorrupt):
		return nil, fmt.Errorf("intake: read lock of %s: %w", req.service, err)
	}
	if rec.RequestSeq != 0 && rec.RequestSeq == req.seq {
		// this very request, delivered again after its release moved on
		// (its ack was lost with the process): decided already
		return nil, errDecided
	}
	return reject("id", "release id %s was already used; every request needs a new id", req.releaseID), nil
}

// errDecided: a redelivered request that was decided already.
var errDecided = errors.New("intake: request decided already")

func (in *Intake) publishRejection(ctx context.Context, req request, r *rejection) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	data := events.Rejected{Reason: r.reason, Field: r.field, InProgress: r.inProgress, Version: printable(req.body.Version)}
	if req.service != subjects.Invalid {
		data.Service = req.service
	}
	ev, err := events.NewWithID(events.DerivedID(req.releaseID, events.ReleaseRejected, 0), Source,
		events.ReleaseRejected, req.service, req.releaseID, data)
	if err != nil {
		return natsx.Permanent(err)
	}
	if _, err := natsx.Publish(ctx, in.js, events.ReleaseRejected.Subject(req.service), ev); err != nil {
		return err
	}
	in.log.Info().Str(logging.FieldService, req.service).Str(logging.FieldRelease, req.releaseID).
		Str("field", r.field).Str("reason", r.reason).Msg("release rejected")
	return nil
}

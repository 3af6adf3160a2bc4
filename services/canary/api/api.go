// Package api is the team API of the canary service: release, rollback,
// abort, calibrate, the service specs and consumers of a service's events,
// as NATS requests on
// redblack.api.<team>.<user>.<verb>.<service>. A team user may publish only
// under its own team and user and its own services (shared/auth), so the
// subject is the caller's authenticated identity: requested_by in every
// event the API writes is derived from it, never read from the body. The
// API also checks that the service's spec names the caller's team as owner.
package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/redblack/redblack/shared/analysis"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// Verbs of the API.
const (
	VerbRelease   = "release"    // body ReleaseRequest, answer Answer
	VerbRollback  = "rollback"   // body Reason, answer Answer
	VerbAbort     = "abort"      // body AbortRequest, answer Answer
	VerbSpecGet   = "spec-get"   // no body, answer spec.Service
	VerbSpecApply = "spec-apply" // body spec.Service, answer Applied
)

// Queue is the queue group of the API's subscription: copies of the canary
// service share the calls.
const Queue = "canary-api"

// MaxBody bounds a call's body.
const MaxBody = 64 << 10

// ReleaseRequest is the body of a release (or calibration) call.
type ReleaseRequest struct {
	// Key, picked by the caller for each release it asks for (8–64 of
	// [A-Za-z0-9_-]; Call picks one), makes a repeated call the same
	// request: a call retried after its answer was lost (a node's death, a
	// reconnection) asks for one release, not two.
	Key       string          `json:"key,omitempty"`
	Version   string          `json:"version"`
	Artifact  events.Artifact `json:"artifact,omitzero"`
	Reason    string          `json:"reason,omitempty"`
	Calibrate bool            `json:"calibrate,omitempty"`
	Duration  string          `json:"duration,omitempty"`
}

// Reason is the body of a rollback call.
type Reason struct {
	Reason string `json:"reason,omitempty"`
}

// AbortRequest is the body of an abort call.
type AbortRequest struct {
	Release string `json:"release"`
	Reason  string `json:"reason"`
}

// AnalysisGet is the body of an analysis-get call: the team whose template
// to read (the caller's if empty; another team's for the admin only).
type AnalysisGet struct {
	Owner string `json:"owner,omitempty"`
}

// Answer is what release, rollback and abort return: the release and the
// stream sequence of the event written, to follow it from.
type Answer struct {
	Release string `json:"release"`
	Version string `json:"version,omitempty"`
	Phase   string `json:"phase,omitempty"`
	Seq     uint64 `json:"seq"`
	By      string `json:"by"`
}

// Applied is what spec-apply returns.
type Applied struct {
	Service string `json:"service"`
	Result  string `json:"result"`
}

// Error is the answer to a refused call.
type Error struct {
	Error string `json:"error"`
}

// API serves the calls.
type API struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	log zerolog.Logger
}

// New builds the API on the service's connection.
func New(nc *nats.Conn, js jetstream.JetStream, log zerolog.Logger) *API {
	return &API{nc: nc, js: js, log: log}
}

// maxCalls bounds the calls handled at once.
const maxCalls = 64

// Start subscribes to every API subject. Stop it with Unsubscribe.
func (a *API) Start() (*nats.Subscription, error) {
	// calls are handled side by side (at most maxCalls at once), so that a
	// call waiting out an election holds up no other, nor its own repeats
	sem := make(chan struct{}, maxCalls)
	sub, err := a.nc.QueueSubscribe(subjects.APIPrefix+".*.*.*.*", Queue, func(m *nats.Msg) {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			a.handle(m)
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	return sub, a.nc.Flush()
}

// handle answers one call; a panic answers an error and is logged, never
// stops the service.
func (a *API) handle(m *nats.Msg) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error().Str("subject", m.Subject).Interface("panic", r).Msg("api call panicked")
			a.respond(m, nil, fmt.Errorf("internal error"))
		}
	}()
	// a stream electing its leader answers nothing until it has one: each
	// attempt is bounded, and the call is tried again (every call is safe
	// to repeat: a release by its key, the rest by what they read and
	// write) until HandlerPatience
	deadline := time.Now().Add(HandlerPatience)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), min(handlerAttempt, time.Until(deadline)))
		v, err := a.call(ctx, m)
		cancel()
		if !natsx.Transient(err) || time.Until(deadline) <= 250*time.Millisecond {
			a.respond(m, v, err)
			return
		}
		a.log.Warn().Err(err).Str("subject", m.Subject).Msg("api call: NATS did not answer; trying again")
		time.Sleep(250 * time.Millisecond)
	}
}

// HandlerPatience bounds one call, tried again after a transient error
// within it: longer than a leader election.
const HandlerPatience = 20 * time.Second

const handlerAttempt = 4 * time.Second

// keyRE is a release request's key.
var keyRE = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

// releaseID is the id of a release asked for: from the caller's key when it
// gave one (the same for a repeated call, and never one another caller can
// make, as the identity and the service are hashed with it), else new.
func releaseID(id auth.Identity, service, key string) (string, error) {
	if key == "" {
		return events.NewID(), nil
	}
	if !keyRE.MatchString(key) {
		return "", fmt.Errorf("key %q: want 8-64 of [A-Za-z0-9_-]", key)
	}
	sum := sha256.Sum256([]byte(id.String() + "\x00" + service + "\x00" + key))
	return hex.EncodeToString(sum[:16]), nil
}

func (a *API) respond(m *nats.Msg, v any, err error) {
	if m.Reply == "" {
		return
	}
	if err != nil {
		v = Error{Error: err.Error()}
	}
	b, _ := json.Marshal(v)
	_ = m.Respond(b)
}

func (a *API) call(ctx context.Context, m *nats.Msg) (any, error) {
	c, err := subjects.ParseAPI(m.Subject)
	if err != nil {
		return nil, err
	}
	if len(m.Data) > MaxBody {
		return nil, fmt.Errorf("body: %d bytes, at most %d", len(m.Data), MaxBody)
	}
	id := auth.Identity{Team: c.Team, User: c.User}
	switch c.Verb {
	case VerbRelease:
		var req ReleaseRequest
		if err := DecodeBody(m.Data, &req); err != nil {
			return nil, err
		}
		if _, err := a.owned(ctx, id, c.Service); err != nil {
			return nil, err
		}
		return a.release(ctx, id, c.Service, req)
	case VerbRollback:
		var req Reason
		if err := DecodeBody(m.Data, &req); err != nil {
			return nil, err
		}
		if _, err := a.owned(ctx, id, c.Service); err != nil {
			return nil, err
		}
		return a.rollback(ctx, id, c.Service, req.Reason)
	case VerbAbort:
		var req AbortRequest
		if err := DecodeBody(m.Data, &req); err != nil {
			return nil, err
		}
		if _, err := a.owned(ctx, id, c.Service); err != nil {
			return nil, err
		}
		return a.abort(ctx, id, c.Service, req)
	case VerbSpecGet:
		return a.owned(ctx, id, c.Service)
	case VerbSpecApply:
		var s spec.Service
		if err := DecodeBody(m.Data, &s); err != nil {
			return nil, err
		}
		return a.apply(ctx, id, c.Service, s)
	case subjects.VerbAnalysisApply:
		var t analysis.Template
		if err := DecodeBody(m.Data, &t); err != nil {
			return nil, err
		}
		return a.applyAnalysis(ctx, id, c.Service, t)
	case subjects.VerbAnalysisGet:
		var req AnalysisGet
		if err := DecodeBody(m.Data, &req); err != nil {
			return nil, err
		}
		owner := id.Team
		if req.Owner != "" && req.Owner != id.Team {
			if id.Team != auth.TeamAdmin {
				return nil, fmt.Errorf("owner: team %s reads only its own templates", id.Team)
			}
			owner = req.Owner
		}
		kv, err := natsx.Bucket(ctx, a.js, topology.BucketAnalysis)
		if err != nil {
			return nil, err
		}
		return analysis.Get(ctx, kv, owner, c.Service)
	case VerbConsumer:
		var req ConsumerRequest
		if err := DecodeBody(m.Data, &req); err != nil {
			return nil, err
		}
		if _, err := a.owned(ctx, id, c.Service); err != nil {
			return nil, err
		}
		return a.consumer(ctx, id, c.Service, req)
	}
	return nil, fmt.Errorf("unknown verb %q: want release, rollback, abort, spec-get, spec-apply, consumer, %s or %s", c.Verb, subjects.VerbAnalysisApply, subjects.VerbAnalysisGet)
}

// DecodeBody decodes a call's JSON body into v, refusing unknown fields; an
// empty body is {}.
func DecodeBody(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return nil
}

// owned reads the service's spec and checks that id's team owns it (the
// admin owns everything).
func (a *API) owned(ctx context.Context, id auth.Identity, service string) (spec.Service, error) {
	kv, err := natsx.Bucket(ctx, a.js, topology.BucketServices)
	if err != nil {
		return spec.Service{}, err
	}
	s, err := spec.Get(ctx, kv, service)
	if err != nil {
		return s, err
	}
	if id.Team != auth.TeamAdmin && s.Owner != id.Team {
		return spec.Service{}, fmt.Errorf("service %s is owned by team %s, not %s", service, s.Owner, id.Team)
	}
	return s, nil
}

func (a *API) release(ctx context.Context, id auth.Identity, service string, req ReleaseRequest) (Answer, error) {
	rid, err := releaseID(id, service, req.Key)
	if err != nil {
		return Answer{}, err
	}
	ev, err := events.NewWithID(rid, "redblack/canary-api", events.ReleaseRequested, service, rid, events.Requested{
		Service: service, Version: req.Version, Artifact: req.Artifact, RequestedBy: id.String(), Reason: req.Reason,
		Calibrate: req.Calibrate, Duration: req.Duration,
	})
	if err != nil {
		return Answer{}, err
	}
	ack, err := natsx.Publish(ctx, a.js, events.ReleaseRequested.Subject(service), ev)
	if err != nil {
		return Answer{}, err
	}
	a.log.Info().Str("service", service).Str("release", rid).Str("by", id.String()).Msg("release requested")
	return Answer{Release: rid, Version: req.Version, Seq: ack.Sequence, By: id.String()}, nil
}

func (a *API) rollback(ctx context.Context, id auth.Identity, service, reason string) (Answer, error) {
	rec, err := RollbackTarget(ctx, a.js, service)
	if err != nil {
		return Answer{}, err
	}
	if reason == "" {
		reason = "requested by hand"
	}
	ev, err := events.New("redblack/canary-api", events.RollbackRequested, service, rec.ID, events.Rollback{Service: service, Group: rec.Group, Reason: reason, By: id.String()})
	if err != nil {
		return Answer{}, err
	}
	ack, err := natsx.Publish(ctx, a.js, events.RollbackRequested.Subject(service), ev)
	if err != nil {
		return Answer{}, err
	}
	return Answer{Release: rec.ID, Version: rec.Version, Phase: string(rec.Phase), Seq: ack.Sequence, By: id.String()}, nil
}

func (a *API) abort(ctx context.Context, id auth.Identity, service string, req AbortRequest) (Answer, error) {
	if err := release.ValidateID(req.Release); err != nil {
		return Answer{}, err
	}
	if len(bytes.TrimSpace([]byte(req.Reason))) == 0 {
		return Answer{}, errors.New("reason: say why, for the audit trail")
	}
	kv, err := natsx.Bucket(ctx, a.js, topology.BucketReleases)
	if err != nil {
		return Answer{}, err
	}
	rec, _, err := release.Store{KV: kv}.Get(ctx, req.Release)
	if err != nil {
		return Answer{}, err
	}
	if rec.Service != service {
		return Answer{}, fmt.Errorf("release %s is not a release of %s", req.Release, service)
	}
	if rec.Phase.Final() {
		return Answer{}, fmt.Errorf("release %s has ended already: %s", req.Release, rec.Phase)
	}
	ev, err := events.New("redblack/canary-api", events.AbortRequested, service, rec.ID, events.Rollback{Service: service, Group: rec.Group, Reason: req.Reason, By: id.String()})
	if err != nil {
		return Answer{}, err
	}
	ack, err := natsx.Publish(ctx, a.js, events.AbortRequested.Subject(service), ev)
	if err != nil {
		return Answer{}, err
	}
	return Answer{Release: rec.ID, Version: rec.Version, Phase: string(rec.Phase), Seq: ack.Sequence, By: id.String()}, nil
}

func (a *API) apply(ctx context.Context, id auth.Identity, service string, s spec.Service) (Applied, error) {
	if s.Name != service {
		return Applied{}, fmt.Errorf("name: the spec is for %q, the call for %q", s.Name, service)
	}
	if id.Team != auth.TeamAdmin && s.Owner != id.Team {
		return Applied{}, fmt.Errorf("owner: %q; a spec applied by team %s must name it as owner", s.Owner, id.Team)
	}
	kv, err := natsx.Bucket(ctx, a.js, topology.BucketServices)
	if err != nil {
		return Applied{}, err
	}
	if cur, err := spec.Get(ctx, kv, service); err == nil && id.Team != auth.TeamAdmin && cur.Owner != id.Team {
		return Applied{}, fmt.Errorf("service %s is owned by team %s", service, cur.Owner)
	} else if err != nil && !errors.Is(err, spec.ErrNotFound) {
		return Applied{}, err
	}
	if err := templatesExist(ctx, a.js, s); err != nil {
		return Applied{}, err
	}
	res, err := spec.Apply(ctx, kv, s)
	if err != nil {
		return Applied{}, err
	}
	a.log.Info().Str("service", service).Str("by", id.String()).Str("result", string(res)).Msg("spec applied")
	return Applied{Service: service, Result: string(res)}, nil
}

// templatesExist checks that every analysis template the spec names is
// stored for its owner: a spec never names a template its canary cannot
// read.
func templatesExist(ctx context.Context, js jetstream.JetStream, s spec.Service) error {
	if len(s.Strategy.Analysis) == 0 {
		return nil
	}
	kv, err := natsx.Bucket(ctx, js, topology.BucketAnalysis)
	if err != nil {
		return err
	}
	var fields []spec.FieldError
	for i, name := range s.Strategy.Analysis {
		if _, err := analysis.Get(ctx, kv, s.Owner, name); errors.Is(err, analysis.ErrNotFound) {
			fields = append(fields, spec.FieldError{Field: fmt.Sprintf("strategy.analysis[%d]", i), Reason: fmt.Sprintf("team %s has no analysis template %q (redblack analysis apply -f)", s.Owner, name)})
		} else if err != nil {
			return err
		}
	}
	if len(fields) > 0 {
		return &spec.ValidationError{Fields: fields}
	}
	return nil
}

// applyAnalysis stores a template under the caller's team (the admin may
// name any owner).
func (a *API) applyAnalysis(ctx context.Context, id auth.Identity, name string, t analysis.Template) (Applied, error) {
	if t.Name != name {
		return Applied{}, fmt.Errorf("name: the template is %q, the call for %q", t.Name, name)
	}
	if t.Owner == "" && id.Team == auth.TeamAdmin {
		return Applied{}, errors.New("owner: the admin applies a template for a team: name it (the team whose specs use it)")
	}
	if t.Owner == "" {
		t.Owner = id.Team
	}
	if id.Team != auth.TeamAdmin && t.Owner != id.Team {
		return Applied{}, fmt.Errorf("owner: %q; a template applied by team %s is its own", t.Owner, id.Team)
	}
	kv, err := natsx.Bucket(ctx, a.js, topology.BucketAnalysis)
	if err != nil {
		return Applied{}, err
	}
	res, err := analysis.Put(ctx, kv, t)
	if err != nil {
		return Applied{}, err
	}
	a.log.Info().Str("template", analysis.Key(t.Owner, t.Name)).Str("by", id.String()).Str("result", res).Msg("analysis template applied")
	return Applied{Service: t.Name, Result: res}, nil
}

// RollbackTarget finds what a rollback of service applies to: the release
// holding its lock, or else the last completed release, the one whose
// group has the traffic, if the group it replaced is kept with instances
// up (the last release may be a later one that failed or was aborted).
// When there is none, the error says which groups exist and what to do.
func RollbackTarget(ctx context.Context, js jetstream.JetStream, service string) (release.Record, error) {
	kv, err := natsx.Bucket(ctx, js, topology.BucketReleases)
	if err != nil {
		return release.Record{}, err
	}
	store := release.Store{KV: kv}
	if l, _, err := store.Lock(ctx, service); err == nil {
		rec, _, err := store.Get(ctx, l.Release)
		return rec, err
	} else if !errors.Is(err, release.ErrNotFound) {
		return release.Record{}, err
	}
	c, _, err := store.Counter(ctx, service)
	if err != nil {
		return release.Record{}, err
	}
	if c.LastRelease == "" {
		return release.Record{}, fmt.Errorf("%s has no release to roll back", service)
	}
	rkv, err := natsx.Bucket(ctx, js, topology.BucketRoutes)
	if err != nil {
		return release.Record{}, err
	}
	rt, _, err := routes.Get(ctx, rkv, service)
	if err != nil {
		return release.Record{}, err
	}
	ikv, err := natsx.Bucket(ctx, js, topology.BucketInstances)
	if err != nil {
		return release.Record{}, err
	}
	// the release whose group has the traffic: the last one, or, after a
	// later release that did not complete, the one that made the group
	id := c.LastRelease
	if last, _, err := store.Get(ctx, id); err == nil && rt.Active != "" && last.Group != rt.Active {
		if byGroup, err := store.ReleaseOf(ctx, rt.Active); err == nil {
			id = byGroup
		} else if !errors.Is(err, release.ErrNotFound) {
			return release.Record{}, err
		}
	}
	rec, _, err := store.Get(ctx, id)
	if err != nil {
		return rec, err
	}
	var kept []string
	if rt.Previous != "" {
		if kept, err = discovery.Up(ctx, ikv, service, rt.Previous); err != nil {
			return rec, err
		}
	}
	if rec.Phase == release.PhaseCompleted && rec.Group == rt.Active && len(kept) > 0 {
		return rec, nil
	}
	return rec, noRollback(ctx, ikv, service, rt, rec, len(kept))
}

// noRollback explains why there is nothing to roll back, with the groups
// that exist and what to do instead.
func noRollback(ctx context.Context, ikv jetstream.KeyValue, service string, rt routes.Route, rec release.Record, keptUp int) error {
	why := fmt.Sprintf("the release with the traffic (%s, %s of %s) is %s", rec.ID, rec.Version, rec.Group, rec.Phase)
	switch {
	case rec.Group != rt.Active:
		why = fmt.Sprintf("no release made %s, which has the traffic", dashed(rt.Active))
	case rec.Phase != release.PhaseCompleted:
	case rt.Previous == "":
		why = fmt.Sprintf("%s replaced no group that is kept (the first release, or strategy.keep_previous is off)", rec.Group)
	case keptUp == 0:
		why = fmt.Sprintf("%s, the group it replaced, has no instance up", rt.Previous)
	}
	var groups []string
	for _, g := range rt.Groups() {
		up, err := discovery.Up(ctx, ikv, service, g)
		if err != nil {
			return err
		}
		if len(up) == 0 && g != rt.Active {
			continue
		}
		role := ""
		switch g {
		case rt.Active:
			role = "active, "
		case rt.Previous:
			role = "kept, "
		}
		groups = append(groups, fmt.Sprintf("%s (%s%d up)", g, role, len(up)))
	}
	return fmt.Errorf("nothing to roll back: no release of %s is in flight, and %s. Groups: %s. To go back to an older version, release it again (redblack release %s --version V --artifact …), or move the traffic by hand (redblack traffic switch %s GROUP)",
		service, why, strings.Join(groups, ", "), service, service)
}

func dashed(s string) string {
	if s == "" {
		return "no group"
	}
	return s
}

// CallPatience is how long Call waits for an answer, asking again every
// callAttempt: longer than a leader election and the handler's patience.
const CallPatience = 30 * time.Second

const callAttempt = 5 * time.Second

// Call makes one API call as id and decodes the answer into out. A refused
// call returns the API's reason as the error.
//
// A call with no answer within a few seconds is made again, for up to
// CallPatience: a release request gets a key for that (unless it has one),
// so that its repeats are one request.
func Call(nc *nats.Conn, id auth.Identity, verb, service string, body, out any) error {
	if r, ok := body.(ReleaseRequest); ok && r.Key == "" {
		r.Key = events.NewID()
		body = r
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	subject := subjects.API(id.Team, id.User, verb, service)
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, b); err != nil {
		return fmt.Errorf("%s %s: %w", verb, service, err)
	}
	// the server refuses a forbidden publish with an error that arrives
	// before the answer to the flush's ping: no waiting for a timeout
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("%s %s: %w", verb, service, err)
	}
	if last := nc.LastError(); last != nil && strings.Contains(last.Error(), subject) {
		return fmt.Errorf("%s %s as %s: %w", verb, service, id, last)
	}
	// an answer lost with a node or a reconnection is asked for again on
	// the same inbox: any attempt's answer is the call's. No responders is
	// asked again too: the canary service's subscription is missing from
	// the cluster while its connection moves to another node.
	var msg *nats.Msg
	start := time.Now()
	for deadline := start.Add(CallPatience); ; {
		msg, err = sub.NextMsg(min(callAttempt, time.Until(deadline)))
		if err == nil {
			break
		}
		if time.Until(deadline) <= 0 || !(errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)) {
			return fmt.Errorf("%s %s: no answer in %s: %w (is the canary service running?)", verb, service, time.Since(start).Round(time.Second), err)
		}
		if errors.Is(err, nats.ErrNoResponders) {
			time.Sleep(250 * time.Millisecond) // a back-off, not a wait for a condition: the next request is the test
		}
		if err := nc.PublishRequest(subject, inbox, b); err != nil && !errors.Is(err, nats.ErrConnectionReconnecting) {
			return fmt.Errorf("%s %s: %w", verb, service, err)
		}
	}
	var e Error
	if json.Unmarshal(msg.Data, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		return fmt.Errorf("%s %s: answer: %w", verb, service, err)
	}
	return nil
}

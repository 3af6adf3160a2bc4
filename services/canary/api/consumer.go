package api

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// VerbConsumer creates a consumer of a service's events for the caller:
// body ConsumerRequest, answer Consumer. A team user may not create
// consumers itself (the server cannot check a push consumer's deliver
// subject, which the body of a create request carries): this verb makes a
// pull consumer, or a push one that delivers under the caller's own inbox
// prefix, filtered to one of the service's event subjects.
const VerbConsumer = "consumer"

// ConsumerIdle is how long a consumer made by VerbConsumer outlives its
// last pull.
const ConsumerIdle = time.Minute

// ConsumerRequest is the body of a consumer call.
type ConsumerRequest struct {
	// Stream is RELEASES or FLEET.
	Stream string `json:"stream"`
	// Filter is one of the service's: release.<svc>.> on RELEASES,
	// fleet.<svc>.> or chaos.<svc>.> on FLEET.
	Filter string `json:"filter"`
	// StartSeq, else StartTime, else every message from the first.
	StartSeq  uint64    `json:"start_seq,omitempty"`
	StartTime time.Time `json:"start_time,omitzero"`
	// DeliverSubject makes a push consumer; it must be under the caller's
	// inbox prefix (_INBOX.<team>.<user>.).
	DeliverSubject string `json:"deliver_subject,omitempty"`
}

// Consumer is what a consumer call returns: pull from it with
// $JS.API.CONSUMER.MSG.NEXT.<stream>.<name> (jetstream's Consumer).
type Consumer struct {
	Stream string `json:"stream"`
	Name   string `json:"name"`
}

// consumerFilters are the filters a caller may ask for, by stream.
func consumerFilters(service string) map[string][]string {
	return map[string][]string{
		topology.StreamReleases: {subjects.AllReleases(service)},
		topology.StreamFleet:    {subjects.AllFleet(service), subjects.AllChaos(service)},
	}
}

// checkConsumer refuses a request outside the service's events, or a push
// consumer delivering anywhere but under id's inbox prefix.
func checkConsumer(id auth.Identity, service string, req ConsumerRequest) error {
	filters, ok := consumerFilters(service)[req.Stream]
	if !ok {
		return fmt.Errorf("stream %q: want %s or %s", req.Stream, topology.StreamReleases, topology.StreamFleet)
	}
	if !slices.Contains(filters, req.Filter) {
		return fmt.Errorf("filter %q: want one of %s on %s", req.Filter, strings.Join(filters, ", "), req.Stream)
	}
	if d := req.DeliverSubject; d != "" {
		prefix := id.InboxPrefix() + "."
		if !strings.HasPrefix(d, prefix) || len(d) == len(prefix) || strings.ContainsAny(d, "*> \t\r\n") {
			return fmt.Errorf("deliver_subject %q: a push consumer delivers only under your own inbox prefix %s", d, prefix)
		}
	}
	return nil
}

// consumer makes the consumer asked for: ephemeral, in memory, without
// acks, gone ConsumerIdle after its last use.
func (a *API) consumer(ctx context.Context, id auth.Identity, service string, req ConsumerRequest) (Consumer, error) {
	if err := checkConsumer(id, service, req); err != nil {
		return Consumer{}, err
	}
	cfg := jetstream.ConsumerConfig{
		FilterSubject: req.Filter, AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
		InactiveThreshold: ConsumerIdle, MemoryStorage: true, Replicas: 1,
		Description: "for " + id.String(),
	}
	switch {
	case req.StartSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, req.StartSeq
	case !req.StartTime.IsZero():
		t := req.StartTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	if req.DeliverSubject != "" {
		// a push consumer: made through the raw API (jetstream's makes
		// pull consumers only), its deliver subject checked above
		return a.pushConsumer(ctx, req, cfg)
	}
	c, err := a.js.CreateConsumer(ctx, req.Stream, cfg)
	if err != nil {
		return Consumer{}, err
	}
	a.log.Info().Str("service", service).Str("by", id.String()).Str("consumer", c.CachedInfo().Name).Msg("consumer made")
	return Consumer{Stream: req.Stream, Name: c.CachedInfo().Name}, nil
}

// pushConsumer makes a push consumer through the JetStream API itself
// (jetstream's ConsumerConfig has no deliver subject).
func (a *API) pushConsumer(ctx context.Context, req ConsumerRequest, cfg jetstream.ConsumerConfig) (Consumer, error) {
	cfg.Name = nuid.Next()
	b, err := json.Marshal(cfg)
	if err != nil {
		return Consumer{}, err
	}
	var config map[string]any
	if err := json.Unmarshal(b, &config); err != nil {
		return Consumer{}, err
	}
	config["deliver_subject"] = req.DeliverSubject
	body, err := json.Marshal(map[string]any{"stream_name": req.Stream, "config": config, "action": "create"})
	if err != nil {
		return Consumer{}, err
	}
	m, err := a.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.CREATE."+req.Stream+"."+cfg.Name+"."+req.Filter, body)
	if err != nil {
		return Consumer{}, err
	}
	var resp struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return Consumer{}, fmt.Errorf("consumer: %w", err)
	}
	if resp.Error != nil {
		return Consumer{}, fmt.Errorf("consumer: %s", resp.Error.Description)
	}
	return Consumer{Stream: req.Stream, Name: resp.Name}, nil
}

package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// request publishes a release request as the CLI does and returns its id
// and stream sequence.
func (c *client) request(ctx context.Context, service, version string, art events.Artifact) (string, uint64, error) {
	id := events.NewID()
	ev, err := events.NewWithID(id, "redblack/cli", events.ReleaseRequested, service, id, events.Requested{
		Service: service, Version: version, Artifact: art, RequestedBy: requester(),
	})
	if err != nil {
		return "", 0, err
	}
	ack, err := natsx.Publish(ctx, c.js, events.ReleaseRequested.Subject(service), ev)
	if err != nil {
		return "", 0, err
	}
	return id, ack.Sequence, nil
}

// decision waits for the intake's accepted or rejected event of release id.
func (c *client) decision(service, id string, seq uint64, limit time.Duration) (events.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var got events.Event
	err := c.tail(ctx, topology.StreamReleases, []string{subjects.AllReleases(service)}, from{seq: seq}, true, func(s seen) error {
		if s.bad == nil && s.ev.ReleaseID == id &&
			(s.ev.Type == events.ReleaseAccepted.Type() || s.ev.Type == events.ReleaseRejected.Type()) {
			got = s.ev
			return errStop
		}
		return nil
	})
	if ctx.Err() != nil {
		return got, fmt.Errorf("no decision on release %s within %s", id, limit)
	}
	return got, err
}

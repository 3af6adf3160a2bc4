package cli

import (
	"context"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
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

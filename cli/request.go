package cli

import (
	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/shared/events"
)

// request asks the team API for a release (or a calibration) and returns
// its id and the stream sequence of its request event, to follow it from.
func (c *client) request(service string, req api.ReleaseRequest) (api.Answer, error) {
	var ans api.Answer
	err := c.call(api.VerbRelease, service, req, &ans)
	return ans, err
}

// requestVersion asks for a release of version with artifact, as the demo
// does.
func (c *client) requestVersion(service, version string, art events.Artifact) (string, uint64, error) {
	ans, err := c.request(service, api.ReleaseRequest{Version: version, Artifact: art})
	return ans.Release, ans.Seq, err
}

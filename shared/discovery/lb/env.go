package lb

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/redblack/redblack/shared/natsx"
)

// CredsEnv carries the client's NATS creds themselves, not a path: the
// provisioner puts a spec's env_secrets in an instance's environment, and
// the mesh keeps a tier's creds as its secret SecretName.
const CredsEnv = "REDBLACK_CALLER_CREDS"

// SecretName is the secret a tier's creds are kept as
// (<data>/secrets/<service>/nats-caller).
const SecretName = "nats-caller"

// FromEnv connects to NATS as the environment says (REDBLACK_SERVER, and
// REDBLACK_CREDS as a path or CredsEnv as content) and starts a client on
// that connection, as the caller $REDBLACK_SERVICE unless cfg.Caller
// says; Close on the client returned does not close it, the
// stop function closes both. lookup is os.LookupEnv in a main.
func FromEnv(ctx context.Context, lookup func(string) (string, bool), cfg Config) (*Client, func(), error) {
	c := natsx.Config{URL: nats.DefaultURL, Name: "redblack-caller"}
	c.FromEnv(lookup)
	opts := c.Options()
	if creds, ok := lookup(CredsEnv); ok && creds != "" {
		o, err := natsx.CredsOptions([]byte(creds))
		if err != nil {
			return nil, nil, fmt.Errorf("lb: $%s: %w", CredsEnv, err)
		}
		opts = append(opts, o...)
	}
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("lb: connect %s: %w", c.URL, err)
	}
	if cfg.Caller == "" {
		cfg.Caller, _ = lookup("REDBLACK_SERVICE")
	}
	client, err := Start(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return client, func() { client.Close(); nc.Close() }, nil
}

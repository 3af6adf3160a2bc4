// Package natsx connects to NATS, runs the embedded server, and holds the
// publish, consume and micro-service helpers that make every redblack service
// follow CONVENTIONS.md the same way.
package natsx

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/redblack/redblack/shared/auth"
)

// DefaultURL is where the embedded server of `redblack up` listens.
const DefaultURL = "nats://127.0.0.1:4222"

// Config says how to reach NATS.
type Config struct {
	URL     string // nats://host:port[,nats://…]
	Creds   string // a credentials file (JWT + nkey)
	TLSCert string // client certificate (mutual TLS)
	TLSKey  string // client key
	TLSCA   string // CA bundle to verify the server
	Name    string // the client name shown by the server
}

// DefaultConfig returns a Config for the local embedded server.
func DefaultConfig() Config { return Config{URL: DefaultURL} }

// BindFlags registers --server, --creds, --tls-cert, --tls-key and --tls-ca.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "server", c.URL, "NATS server URL(s) (env REDBLACK_SERVER)")
	fs.StringVar(&c.Creds, "creds", c.Creds, "NATS credentials file (env REDBLACK_CREDS)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "TLS client certificate (env REDBLACK_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "TLS client key (env REDBLACK_TLS_KEY)")
	fs.StringVar(&c.TLSCA, "tls-ca", c.TLSCA, "TLS CA bundle (env REDBLACK_TLS_CA)")
}

// FromEnv fills the fields that REDBLACK_SERVER, REDBLACK_CREDS,
// REDBLACK_TLS_CERT, REDBLACK_TLS_KEY and REDBLACK_TLS_CA set. lookup is
// os.LookupEnv in a main, a map in tests.
func (c *Config) FromEnv(lookup func(string) (string, bool)) {
	for name, field := range map[string]*string{
		"REDBLACK_SERVER": &c.URL, "REDBLACK_CREDS": &c.Creds,
		"REDBLACK_TLS_CERT": &c.TLSCert, "REDBLACK_TLS_KEY": &c.TLSKey, "REDBLACK_TLS_CA": &c.TLSCA,
	} {
		if v, ok := lookup(name); ok && v != "" {
			*field = v
		}
	}
}

// Options returns the nats.go options of c: reconnect forever, client name,
// credentials and TLS.
func (c Config) Options() []nats.Option {
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
	}
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
		// the user may subscribe only under its own inbox prefix
		if b, err := os.ReadFile(c.Creds); err == nil {
			if id, err := auth.IdentityOf(b); err == nil {
				opts = append(opts, nats.CustomInboxPrefix(id.InboxPrefix()))
			}
		}
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	return opts
}

// Connect connects to NATS.
func Connect(c Config) (*nats.Conn, error) {
	nc, err := nats.Connect(c.URL, c.Options()...)
	if err != nil {
		return nil, fmt.Errorf("natsx: connect %s: %w", c.URL, err)
	}
	return nc, nil
}

// ConnectWaiting connects like Connect, but while the servers cannot be
// reached it waits and tries again, with a back-off from 250 ms to 5 s,
// telling attempt about each failure, until ctx ends: a service started
// before NATS (or during an outage of the whole cluster) waits for it. A
// refusal of the credentials is returned at once: waiting would not help.
func ConnectWaiting(ctx context.Context, c Config, attempt func(n int, err error)) (*nats.Conn, error) {
	wait := 250 * time.Millisecond
	for n := 1; ; n++ {
		nc, err := Connect(c)
		if err == nil {
			return nc, nil
		}
		if !unreachable(err) {
			return nil, err
		}
		attempt(n, err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("natsx: connect %s: gave up after %d attempts: %w", c.URL, n, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// unreachable reports an error of no server answering at all, the only
// one waiting can mend (a refusal of the creds, a TLS failure or a missing
// creds file is returned at once).
func unreachable(err error) bool { return errors.Is(err, nats.ErrNoServers) }

// CredsOptions are the nats.go options of a creds file's content: its user
// JWT and seed, and the inbox prefix the user may subscribe under.
func CredsOptions(creds []byte) ([]nats.Option, error) {
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, err
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	opts := []nats.Option{nats.UserJWTAndSeed(token, string(seed))}
	if id, err := auth.IdentityOf(creds); err == nil {
		opts = append(opts, nats.CustomInboxPrefix(id.InboxPrefix()))
	}
	return opts, nil
}

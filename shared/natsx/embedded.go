package natsx

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/redblack/redblack/shared/procfs"
)

// EmbeddedConfig configures the embedded NATS server.
type EmbeddedConfig struct {
	// StoreDir holds JetStream's files.
	StoreDir string
	// Listen is host:port of the client listener. Port 0 or -1 picks a free
	// port. Default 127.0.0.1:4222.
	Listen string
	// MaxPayload overrides the server's 1 MiB message limit when > 0.
	MaxPayload int32
	// Name is the server name (default "redblack").
	Name string
	// Auth, when set, configures authentication (operator mode: see
	// shared/auth); without it the server lets anyone in.
	Auth func(*server.Options) error
	// TLSCert and TLSKey, when set, make the client listener TLS only.
	TLSCert, TLSKey string
}

// Embedded is a NATS server with JetStream running in this process.
type Embedded struct {
	srv *server.Server
	tls bool
}

// StartEmbedded starts the server and waits until it accepts connections.
func StartEmbedded(c EmbeddedConfig) (*Embedded, error) {
	host, port := "127.0.0.1", 4222
	if c.Listen != "" {
		h, p, err := net.SplitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsx: listen address %q: %w", c.Listen, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("natsx: listen port %q: %w", p, err)
		}
		host, port = h, n
		if port == 0 {
			port = server.RANDOM_PORT
		}
	}
	name := c.Name
	if name == "" {
		name = "redblack"
	}
	opts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   c.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: c.MaxPayload,
	}
	if c.Auth != nil {
		if err := c.Auth(opts); err != nil {
			return nil, fmt.Errorf("natsx: %w", err)
		}
	}
	if c.TLSCert != "" || c.TLSKey != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: c.TLSCert, KeyFile: c.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("natsx: tls: %w", err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSVerify = tc, true, false
	}
	if port != server.RANDOM_PORT {
		// the server only logs a port it cannot take, and is then never
		// ready: the port and its holder are said at once instead
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("natsx: embedded server: %w", procfs.ExplainInUse(addr, err))
		}
		l.Close()
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsx: new server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("natsx: embedded server on %s:%d not ready in 10s", host, port)
	}
	return &Embedded{srv: srv, tls: opts.TLS}, nil
}

// ClientURL is the nats:// URL other processes connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Connect opens an in-process client connection named name, as the user
// of creds (a creds file's content; nil on a server without auth). Further
// options (an error handler) are added.
func (e *Embedded) Connect(name string, creds []byte, more ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(e.srv), nats.Name(name), nats.MaxReconnects(-1)}
	if e.tls {
		// an in-process connection is a pipe inside this process: no
		// network to verify the server's certificate against
		opts = append(opts, nats.Secure(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}))
	}
	if creds != nil {
		co, err := CredsOptions(creds)
		if err != nil {
			return nil, fmt.Errorf("natsx: in-process connect %s: %w", name, err)
		}
		opts = append(opts, co...)
	}
	nc, err := nats.Connect(e.srv.ClientURL(), append(opts, more...)...)
	if err != nil {
		return nil, fmt.Errorf("natsx: in-process connect %s: %w", name, err)
	}
	return nc, nil
}

// Server returns the underlying server.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has stopped. Drain the
// clients first.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"
)

// handshakeTimeout bounds a new connection's first bytes (the HTTP/2
// preface) or its TLS handshake.
const handshakeTimeout = 10 * time.Second

// sniffer is a listener that sorts its connections: HTTP/2 ones (the client
// preface, or h2 negotiated by ALPN when tlsConf is set) are served by the
// h2 side with h, the others are handed to fasthttp by Accept untouched. A
// plain HTTP/1.1 connection costs one recv(MSG_PEEK) more, once.
type sniffer struct {
	net.Listener
	tlsConf *tls.Config
	gate    *clientGate
	h2      func(net.Conn)
	conns   chan net.Conn
	closed  chan struct{}
	once    sync.Once
}

func (f *Fast) sniff(l net.Listener, h http.Handler, tlsConf *tls.Config) *sniffer {
	s := &sniffer{Listener: l, tlsConf: tlsConf, gate: f.gate, conns: make(chan net.Conn), closed: make(chan struct{}),
		h2: func(c net.Conn) { f.h2.serveConn(c, h) }}
	go s.accept()
	return s
}

func (s *sniffer) accept() {
	backoff := 5 * time.Millisecond
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				s.Close()
				return
			}
			// out of descriptors or the like: back off, as net/http does
			select {
			case <-s.closed:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		gc, ok := s.gate.admit(c)
		if !ok {
			c.Close()
			continue
		}
		go s.sort(gc)
	}
}

// sort serves c as HTTP/2 or hands it to Accept.
func (s *sniffer) sort(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if s.tlsConf != nil {
		tc := tls.Server(c, s.tlsConf)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		_ = c.SetDeadline(time.Time{})
		if tc.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
			s.h2(tc)
			return
		}
		s.deliver(tc)
		return
	}
	isH2, conn, err := sniffPreface(c)
	if err != nil {
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	if isH2 {
		s.h2(conn)
		return
	}
	s.deliver(conn)
}

func (s *sniffer) deliver(c net.Conn) {
	select {
	case s.conns <- c:
	case <-s.closed:
		c.Close()
	}
}

// Accept returns the next HTTP/1.1 connection.
func (s *sniffer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (s *sniffer) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.Listener.Close()
	})
	return err
}

var clientPreface = []byte(http2.ClientPreface)

// sniffPreface reports whether c opens with the HTTP/2 client preface. It
// peeks (MSG_PEEK) at the first bytes, so the connection is returned as it
// came; only a first segment that holds a part of the preface is read, and
// the connection returned then replays what was read.
func sniffPreface(c net.Conn) (bool, net.Conn, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return readPreface(c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return readPreface(c)
	}
	var buf [24]byte
	var n int
	var rerr error
	if err := raw.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK)
		return rerr != unix.EAGAIN
	}); err != nil {
		return false, nil, err
	}
	switch {
	case rerr != nil:
		return false, nil, rerr
	case n == 0:
		return false, nil, io.EOF
	case !bytes.Equal(buf[:n], clientPreface[:n]):
		return false, c, nil
	case n == len(clientPreface):
		return true, c, nil
	}
	return readPreface(c)
}

// readPreface reads as much of c as the preface is long (or less, when it
// differs first) and returns c replaying it.
func readPreface(c net.Conn) (bool, net.Conn, error) {
	buf := make([]byte, 0, len(clientPreface))
	for len(buf) < len(clientPreface) {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if !bytes.Equal(buf, clientPreface[:len(buf)]) {
			return false, &replayConn{Conn: c, pending: buf}, nil
		}
		if err != nil {
			return false, nil, err
		}
	}
	return true, &replayConn{Conn: c, pending: buf}, nil
}

// replayConn returns pending before the rest of its connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

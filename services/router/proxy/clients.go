package proxy

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
)

// pressureShare is the share of MaxConns above which the gate is under
// pressure: from then on, a client address that already holds fewClients
// connections gets no more, so the last connections go to new clients.
const (
	pressureShare = 0.9
	fewClients    = 8
)

// Refusal reasons, as counted by Refused.
const (
	// RefusedPerClient is a connection over MaxConnsPerClient.
	RefusedPerClient = "per_client"
	// RefusedPressure is a connection from a client that already held
	// several while the router was near MaxConns.
	RefusedPressure = "pressure"
)

// clientGate bounds the connections each client address holds open, so
// that one address cannot spend the router's MaxConns: a connection over
// its address's cap is closed before a byte is read. Near MaxConns it
// sheds further: only addresses holding few connections are admitted.
// IPv6 clients are counted by their /64, the block one host is given.
type clientGate struct {
	perClient, pressure int
	mu                  sync.Mutex
	open                map[netip.Addr]int
	total               int
	refusedPerClient    atomic.Uint64
	refusedPressure     atomic.Uint64
}

func newClientGate(perClient, maxConns int) *clientGate {
	return &clientGate{perClient: perClient, pressure: int(pressureShare * float64(maxConns)), open: map[netip.Addr]int{}}
}

// clientKey is the address a connection is counted under.
func clientKey(addr net.Addr) (netip.Addr, bool) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	return ip, true
}

// admit returns c counted under its client's address, to be released when
// it is closed, or false when the client may not open another.
func (g *clientGate) admit(c net.Conn) (net.Conn, bool) {
	key, ok := clientKey(c.RemoteAddr())
	if !ok || g.perClient <= 0 {
		return c, true // not TCP (a test's pipe), or no cap
	}
	g.mu.Lock()
	n := g.open[key]
	switch {
	case n >= g.perClient:
		g.mu.Unlock()
		g.refusedPerClient.Add(1)
		return nil, false
	case g.total >= g.pressure && n >= fewClients:
		g.mu.Unlock()
		g.refusedPressure.Add(1)
		return nil, false
	}
	g.open[key] = n + 1
	g.total++
	g.mu.Unlock()
	return &gatedConn{Conn: c, gate: g, key: key}, true
}

func (g *clientGate) release(key netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.open[key]--; g.open[key] <= 0 {
		delete(g.open, key)
	}
}

// gatedConn is a connection the gate counts until it is closed.
type gatedConn struct {
	net.Conn
	gate   *clientGate
	key    netip.Addr
	closed atomic.Bool
}

// Close closes the connection and releases its place, once.
func (c *gatedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.gate.release(c.key)
	}
	return c.Conn.Close()
}

// errNoSyscall is SyscallConn's answer for a connection without one.
var errNoSyscall = syscall.ENOTSUP

// SyscallConn is the underlying connection's, for peeking at its first
// bytes (sniffPreface).
func (c *gatedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNoSyscall
}

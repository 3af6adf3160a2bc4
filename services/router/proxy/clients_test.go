package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
)

// addrConn is a connection from a given client address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }
func (c addrConn) Close() error         { return nil }

func from(ip string) net.Conn {
	return addrConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
}

// TestGateShedsHeavyClientsUnderPressure: each address gets up to its cap;
// above 90 % of MaxConns an address already holding 8 gets no more while a
// new address is still admitted; a closed connection frees its place; the
// addresses of one IPv6 /64 count as one client.
func TestGateShedsHeavyClientsUnderPressure(t *testing.T) {
	g := newClientGate(80, 100)
	admit := func(ip string) net.Conn {
		c, ok := g.admit(from(ip))
		if !ok {
			return nil
		}
		return c
	}
	var heavy []net.Conn
	for range 85 {
		if c := admit("192.0.2.1"); c != nil {
			heavy = append(heavy, c)
		}
	}
	if len(heavy) != 80 || g.refusedPerClient.Load() != 5 {
		t.Fatalf("one address: %d admitted, %d refused; want 80 and 5", len(heavy), g.refusedPerClient.Load())
	}
	for i := range 10 {
		if admit("192.0.2.2") == nil {
			t.Fatalf("a second address's connection %d refused below pressure", i)
		}
	}
	// 90 open: pressure. The second address holds 10 ≥ 8: refused; a new one is not.
	if admit("192.0.2.2") != nil || g.refusedPressure.Load() != 1 {
		t.Fatal("under pressure, an address holding 10 was admitted")
	}
	if admit("192.0.2.3") == nil {
		t.Fatal("under pressure, a new address was refused")
	}
	for _, c := range heavy[:40] {
		c.Close()
		c.Close() // twice: released once
	}
	if g.total != 51 || g.open[netipOf(t, "192.0.2.1")] != 40 {
		t.Fatalf("after 40 closed: total %d, the heavy address %d", g.total, g.open[netipOf(t, "192.0.2.1")])
	}
	if admit("192.0.2.2") == nil {
		t.Fatal("below pressure again, the second address was refused")
	}
	g = newClientGate(3, 100)
	for i := range 3 {
		if admit(fmt.Sprintf("2001:db8::%x", i+1)) == nil {
			t.Fatalf("v6 connection %d refused", i)
		}
	}
	if admit("2001:db8::ffff:1") != nil {
		t.Fatal("a fourth address of the same /64 was admitted over a cap of 3")
	}
	if admit("2001:db8:0:1::1") == nil {
		t.Fatal("another /64 was refused")
	}
}

func netipOf(t *testing.T, ip string) netip.Addr {
	k, ok := clientKey(&net.TCPAddr{IP: net.ParseIP(ip)})
	if !ok {
		t.Fatal(ip)
	}
	return k
}

package bench

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
)

// Forward serves l until it fails: each connection it accepts is joined to
// a new connection to the next of backends, and bytes are copied each way
// by a goroutine of its own through a 32 KiB buffer (a read and a write per
// request and per response, as a proxy makes; not splice, which a proxy
// that reads the requests cannot use). No HTTP parsing, routing, metrics
// or deadlines: the least a Go proxy with a goroutine per connection does
// per request, the floor `bench router` measures beside the router.
func Forward(l net.Listener, backends []string) error {
	if len(backends) == 0 {
		return fmt.Errorf("forward: no backend")
	}
	var next atomic.Uint64
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			u, err := net.Dial("tcp", backends[next.Add(1)%uint64(len(backends))])
			if err != nil {
				c.Close()
				return
			}
			go pump(u, c)
			pump(c, u)
		}()
	}
}

// pump copies src to dst until either fails, then closes both.
func pump(dst, src net.Conn) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// StartForwarder runs Forward in front of backends as its own process:
// self (the redblack binary) with the hidden `bench forwarder` command.
func StartForwarder(self string, backends []string) (*Anchor, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"bench", "forwarder", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, backends...)
	conf := "redblack " + strings.Join(args, " ") + "\n"
	return startAnchor("Go forwarder (no HTTP)", port, conf, exec.Command(self, args...))
}

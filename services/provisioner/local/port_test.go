package local

import (
	"testing"
	"time"
)

// TestPortsAreHeldAfterExit: a port handed to an instance is not handed out
// again while it runs, nor for PortHold after it exited, even when the
// kernel offers it again at once; after the hold it is.
func TestPortsAreHeldAfterExit(t *testing.T) {
	offers := []int{4001, 4001, 4001, 4002, 4001}
	l := &Local{cfg: Config{PortHold: time.Hour}, ports: map[int]time.Time{}, free: func() (int, error) {
		p := offers[0]
		offers = offers[1:]
		return p, nil
	}}
	if p, _ := l.pickPort(); p != 4001 {
		t.Fatalf("first port %d", p)
	}
	// the instance runs: the kernel offers 4001 again, twice
	if p, _ := l.pickPort(); p != 4002 {
		t.Fatalf("second port %d, want 4002 (4001 is in use)", p)
	}
	l.releasePort(4001)
	l.cfg.PortHold = -time.Second
	l.releasePort(4002) // held until a second ago: free again
	l.free = func() (int, error) { return 4002, nil }
	if p, err := l.pickPort(); err != nil || p != 4002 {
		t.Fatalf("a port past its hold: %d, %v", p, err)
	}
	l.free = func() (int, error) { return 4001, nil }
	if p, err := l.pickPort(); err == nil {
		t.Fatalf("port %d handed out within its hold", p)
	}
}

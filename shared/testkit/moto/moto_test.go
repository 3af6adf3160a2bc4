package moto

import (
	"net"
	"os"
	"testing"
)

// TestListensOn tells the process that holds a listening port from one that
// does not: what keeps two packages' tests from sharing one moto.
func TestListensOn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if ours, err := listensOn(os.Getpid(), port); err != nil || !ours {
		t.Fatalf("this process listens on %d: got %v, %v", port, ours, err)
	}
	if ours, _ := listensOn(os.Getppid(), port); ours {
		t.Fatalf("the parent process does not listen on %d", port)
	}
	l.Close()
	if ours, _ := listensOn(os.Getpid(), port); ours {
		t.Fatalf("closed listener still seen on %d", port)
	}
}

package cli

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// TestBoundedStop: a shutdown that never ends does not hold up: it exits
// with status 3 past its timeout, or at once on a second signal; one that
// ends returns its own result.
func TestBoundedStop(t *testing.T) {
	a := &app{}
	stuck := make(chan struct{})
	defer close(stuck)
	never := func() error { <-stuck; return nil }

	start := time.Now()
	err := a.boundedStop(never, 300*time.Millisecond)
	var ec exitCode
	if !errors.As(err, &ec) || ec.code != 3 || time.Since(start) > 5*time.Second {
		t.Fatalf("a stuck stop: %v after %s", err, time.Since(start))
	}

	// the test's own handler for every SIGTERM it sends, so that none
	// finds the default (the end of the test binary) between two
	// registrations; each is seen here before the handler goes
	sink := make(chan os.Signal, 1000)
	signal.Notify(sink, syscall.SIGTERM)
	sent := 0
	defer func() {
		for deadline := time.After(10 * time.Second); len(sink) < sent; {
			select {
			case <-deadline:
				t.Errorf("%d of %d SIGTERMs seen", len(sink), sent)
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		signal.Stop(sink)
	}()
	done := make(chan error, 1)
	start = time.Now()
	go func() { done <- a.boundedStop(never, time.Hour) }()
	// the second signal, until boundedStop has taken it (its Notify may
	// not be in place yet when the first is sent)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for err = nil; err == nil; {
		select {
		case err = <-done:
		case <-tick.C:
			if sent < cap(sink) {
				_ = syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
				sent++
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a second SIGTERM did not end the stop")
		}
	}
	if !errors.As(err, &ec) || ec.code != 3 {
		t.Fatalf("a second signal: %v", err)
	}

	want := errors.New("stopped with an error")
	if err := a.boundedStop(func() error { return want }, time.Hour); err != want {
		t.Fatalf("a stop that ends: %v", err)
	}
}

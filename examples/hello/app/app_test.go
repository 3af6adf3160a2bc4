package app

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func get(h http.Handler, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	return w
}

func TestVersionAndHealth(t *testing.T) {
	a := New(Config{Version: "v7", Instance: "i-1"}, time.Now)
	if w := get(a, "/"); w.Code != 200 || !strings.Contains(w.Body.String(), "v7") || w.Header().Get("X-Version") != "v7" {
		t.Fatalf("/ = %d %q", w.Code, w.Body)
	}
	if w := get(a, "/healthz"); w.Code != 200 {
		t.Fatalf("/healthz = %d", w.Code)
	}
	if w := get(New(Config{FailHealth: true}, time.Now), "/healthz"); w.Code != 503 {
		t.Fatalf("--fail-health /healthz = %d", w.Code)
	}
}

func TestErrorRate(t *testing.T) {
	a := New(Config{ErrorRate: 0.3}, time.Now)
	fails := 0
	const n = 4000
	for range n {
		if get(a, "/").Code == 500 {
			fails++
		}
	}
	// 0.3·4000 = 1200, sd ≈ 29: ±6 sd
	if fails < 1025 || fails > 1375 {
		t.Fatalf("%d of %d failed, want about 1200", fails, n)
	}
}

func TestFailAfterKeepsHealthGreen(t *testing.T) {
	now := time.Unix(0, 0)
	a := New(Config{FailAfter: time.Minute}, func() time.Time { return now })
	if w := get(a, "/"); w.Code != 200 {
		t.Fatalf("before: %d", w.Code)
	}
	now = now.Add(time.Minute)
	if w := get(a, "/"); w.Code != 500 {
		t.Fatalf("after: %d", w.Code)
	}
	if w := get(a, "/healthz"); w.Code != 200 {
		t.Fatalf("health after: %d", w.Code)
	}
}

func TestLatencyJitterBounds(t *testing.T) {
	a := New(Config{Latency: 10 * time.Millisecond, Jitter: 5 * time.Millisecond}, time.Now)
	for range 1000 {
		if d := a.delay(); d < 5*time.Millisecond || d > 15*time.Millisecond {
			t.Fatalf("delay %v outside 5..15ms", d)
		}
	}
	if d := New(Config{Latency: time.Millisecond, Jitter: 10 * time.Millisecond}, time.Now).delay(); d < 0 {
		t.Fatalf("negative delay %v", d)
	}
}

// TestTail: --tail-rate of the requests take --tail-latency more, the rest
// none.
func TestTail(t *testing.T) {
	a := New(Config{Latency: 10 * time.Millisecond, TailRate: 0.05, TailLatency: 20 * time.Millisecond}, time.Now)
	slow := 0
	for range 10_000 {
		switch d := a.delay(); d {
		case 30 * time.Millisecond:
			slow++
		case 10 * time.Millisecond:
		default:
			t.Fatalf("delay %v: want 10ms or 30ms", d)
		}
	}
	if slow < 400 || slow > 600 { // 500 expected, σ ≈ 22
		t.Fatalf("%d of 10,000 in the tail, want about 500", slow)
	}
}

func TestFailHealthAfter(t *testing.T) {
	now := time.Unix(0, 0)
	a := New(Config{FailHealthAfter: time.Second}, func() time.Time { return now })
	if w := get(a, "/healthz"); w.Code != 200 {
		t.Fatalf("before: %d", w.Code)
	}
	now = now.Add(time.Second)
	if w := get(a, "/healthz"); w.Code != 503 {
		t.Fatalf("after: %d", w.Code)
	}
}

// TestOrders: /metrics counts the requests answered and the orders placed;
// --drop-orders loses that share of the orders, and the answers stay 200.
func TestOrders(t *testing.T) {
	for _, c := range []struct {
		drop     float64
		min, max int
	}{{0, 2000, 2000}, {0.3, 1300, 1500}} { // 1,400 expected at 0.3, σ ≈ 20
		a := New(Config{DropOrders: c.drop}, time.Now)
		for range 2000 {
			if w := get(a, "/"); w.Code != 200 {
				t.Fatalf("drop %v: status %d", c.drop, w.Code)
			}
		}
		body := get(a, "/metrics").Body.String()
		var answered, orders int
		for _, l := range strings.Split(body, "\n") {
			fmt.Sscanf(l, "hello_requests_total %d", &answered)
			fmt.Sscanf(l, "hello_orders_total %d", &orders)
		}
		if answered != 2000 || orders < c.min || orders > c.max {
			t.Fatalf("drop %v: %d answered, %d orders, want 2000 and %d..%d:\n%s", c.drop, answered, orders, c.min, c.max, body)
		}
	}
}

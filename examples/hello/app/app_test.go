package app

import (
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

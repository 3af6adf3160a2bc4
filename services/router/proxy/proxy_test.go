package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/redblack/redblack/services/router/routing"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/routes"
)

func benchProxy(b *testing.B) (*Proxy, func()) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	addr := strings.TrimPrefix(up.URL, "http://")
	p := New(Config{})
	p.Swap(routing.NewRegistry().Build(routing.Input{
		Routes:    map[string]routes.Route{"hello": {Service: "hello", Weights: map[string]int{"hello-v001": 1000}}},
		Instances: map[string]discovery.Entry{"k": {ID: "a", Service: "hello", Group: "hello-v001", Address: addr, State: discovery.StateUp}},
	}))
	return p, up.Close
}

// BenchmarkProxyHotPath is one request through the proxy to a live upstream
// over a kept-alive connection; allocs/op counts the proxy's and net/http's.
func BenchmarkProxyHotPath(b *testing.B) {
	p, done := benchProxy(b)
	defer done()
	req := httptest.NewRequest("GET", "http://hello/", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkRouting is the routing decision alone: table lookup, group by
// weight, instance by power of two choices.
func BenchmarkRouting(b *testing.B) {
	p, done := benchProxy(b)
	defer done()
	b.ReportAllocs()
	for b.Loop() {
		s := p.Table().Lookup("hello:8080")
		if s.PickGroup().Pick(nil) == nil {
			b.Fatal("nil")
		}
	}
}

func TestRetryableMethods(t *testing.T) {
	get, _ := http.NewRequest("GET", "http://x/", nil)
	post, _ := http.NewRequest("POST", "http://x/", strings.NewReader("x"))
	post.GetBody = nil
	other := fmt.Errorf("connection reset")
	if !retryable(get, other) || retryable(post, other) {
		t.Fatal("GET must be retried after a reset, a POST with a body must not")
	}
}

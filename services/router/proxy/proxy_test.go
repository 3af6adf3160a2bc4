package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/routing"
)

func benchFast(b *testing.B) (*Fast, string, func()) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	f := NewFast(Config{})
	f.Swap(routing.NewRegistry().Build(routing.Input{
		Routes:    map[string]routes.Route{"hello": {Service: "hello", Weights: map[string]int{"hello-v001": 1000}}},
		Instances: map[string]discovery.Entry{"k": {ID: "a", Service: "hello", Group: "hello-v001", Address: strings.TrimPrefix(up.URL, "http://"), State: discovery.StateUp}},
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go f.Serve(l)
	return f, l.Addr().String(), func() { l.Close(); up.Close() }
}

// BenchmarkProxyHotPath is one request through the data plane to a live
// upstream over kept-alive connections. allocs/op and ns/op include the
// client and the upstream (both net/http, in this process).
func BenchmarkProxyHotPath(b *testing.B) {
	_, addr, done := benchFast(b)
	defer done()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET / HTTP/1.1\r\nHost: hello\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%v %v", resp, err)
		}
		resp.Body.Close()
	}
}

// BenchmarkRouting is the routing decision alone: table lookup, group by
// weight, instance by least outstanding.
func BenchmarkRouting(b *testing.B) {
	f, _, done := benchFast(b)
	defer done()
	host := []byte("hello:8080")
	b.ReportAllocs()
	for b.Loop() {
		s := f.Table().LookupBytes(host)
		if s.PickGroup().Pick(nil) == nil {
			b.Fatal("nil")
		}
	}
}

func TestDialFailed(t *testing.T) {
	_, err := net.Dial("tcp", "127.0.0.1:1")
	if !dialFailed(err) || !dialFailed(fasthttp.ErrDialTimeout) || dialFailed(errors.New("connection reset by peer")) {
		t.Fatal("dialFailed misclassifies")
	}
}

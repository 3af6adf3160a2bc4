package router_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/services/router/proxy"
	"github.com/redblack/redblack/shared/events"
)

// TestUpgradeSplicedOnlyAfter101: a request with Connection: Upgrade to a
// plain HTTP instance, then 20 requests pipelined on the same socket: each
// of the 21 is routed as HTTP (the instance sees the router's request id),
// none goes straight through a tunnel.
func TestUpgradeSplicedOnlyAfter101(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{})
	var mu sync.Mutex
	seen := 0
	r.register("hello-v001", "plain", backend(t, "plain", func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		seen++
		mu.Unlock()
		w.Header().Set("X-Seen-Request-Id", req.Header.Get("X-Request-Id"))
		fmt.Fprint(w, "plain")
	}))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out bytes.Buffer
	out.WriteString("GET /ws HTTP/1.1\r\nHost: hello\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	for range 20 {
		out.WriteString("GET /next HTTP/1.1\r\nHost: hello\r\n\r\n")
	}
	if _, err := conn.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for i := range 21 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Request-Id") == "" {
			t.Fatalf("answer %d: %d, request id %q: not routed by the router", i, resp.StatusCode, resp.Header.Get("X-Seen-Request-Id"))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if seen != 21 {
		t.Fatalf("the instance saw %d requests, want 21", seen)
	}
}

// TestConnectionAndTunnelBounds: past MaxTunnels an upgrade is answered
// 503; past MaxConns (HTTP connections: a spliced tunnel counts against
// MaxTunnels instead) a new connection is refused.
func TestConnectionAndTunnelBounds(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{Proxy: proxy.Config{MaxConns: 2, MaxTunnels: 1}})
	r.register("hello-v001", "ws", backend(t, "ws", func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Upgrade") != "" {
			conn, buf, _ := w.(http.Hijacker).Hijack()
			defer conn.Close()
			buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			buf.Flush()
			io.Copy(io.Discard, buf) // until the client closes
			return
		}
		fmt.Fprint(w, "ok")
	}))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	addr := strings.TrimPrefix(url, "http://")
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	status := func(c net.Conn, br *bufio.Reader, req string) int {
		fmt.Fprint(c, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0 // closed
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	const get = "GET / HTTP/1.1\r\nHost: hello\r\n\r\n"
	const upgrade = "GET /ws HTTP/1.1\r\nHost: hello\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	c1, b1 := dial()
	if got := status(c1, b1, upgrade); got != 101 {
		t.Fatalf("first upgrade: %d", got)
	}
	c2, b2 := dial()
	if got := status(c2, b2, upgrade); got != 503 {
		t.Fatalf("a second upgrade past MaxTunnels 1: %d, want 503", got)
	}
	c3, b3 := dial()
	if got := status(c3, b3, get); got != 200 {
		t.Fatalf("third connection: %d", got)
	}
	// c2 (still open after its 503) and c3 are the two HTTP connections
	c4, b4 := dial()
	if got := status(c4, b4, get); got == 200 {
		t.Fatalf("a third HTTP connection past MaxConns 2 was served")
	}
	// a tunnel closed frees its slot, connections closed theirs
	for _, c := range []net.Conn{c1, c2, c3, c4} {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, br := dial()
		if got := status(c, br, upgrade); got == 101 {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the closed tunnel's slot never came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBodyBudget: bodies held by the router at once are bounded: with a
// 1 MiB budget, a second 600 KiB body while the first is in flight is
// answered 503 before it is read (the client has sent its headers and the
// first 64 KiB only); once the first is done, bodies pass.
func TestBodyBudget(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{Proxy: proxy.Config{BodyBudget: 1 << 20}})
	arrived, release := make(chan struct{}, 4), make(chan struct{})
	var once sync.Once
	done := func() { once.Do(func() { close(release) }) }
	t.Cleanup(done) // a failure never leaves the instance's handler waiting
	r.register("hello-v001", "slow", backend(t, "slow", func(w http.ResponseWriter, req *http.Request) {
		n, _ := io.Copy(io.Discard, req.Body)
		if req.Header.Get("X-Hold") != "" {
			arrived <- struct{}{}
			<-release
		}
		fmt.Fprint(w, n)
	}))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	const size = 600 << 10
	post := func(hold bool) (int, string) {
		req, _ := http.NewRequest("POST", url+"/upload", bytes.NewReader(bytes.Repeat([]byte("x"), size)))
		req.Host = "hello"
		if hold {
			req.Header.Set("X-Hold", "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get(proxy.ErrorHeader) + string(b)
	}
	first := make(chan int, 1)
	go func() { code, _ := post(true); first <- code }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the first body never reached the instance")
	}
	// the second: headers and the first 64 KiB, then the answer is read
	// before the rest is sent, so the refusal cannot race the upload
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: hello\r\nContent-Length: %d\r\n\r\n", size)
	c.Write(bytes.Repeat([]byte("x"), 64<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a second body over the budget: no answer before the rest of its body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(resp.Header.Get(proxy.ErrorHeader), "budget") {
		t.Fatalf("a second body over the budget: %d %q", resp.StatusCode, resp.Header.Get(proxy.ErrorHeader))
	}
	done()
	if code := <-first; code != 200 {
		t.Fatalf("the first body: %d", code)
	}
	if code, body := post(false); code != 200 || body != fmt.Sprint(size) {
		t.Fatalf("a body after the first is done: %d %q", code, body)
	}
}

// TestStreamIdleTimeout: the upstream timeout is idle, not total: a
// stream that sends a chunk every 150 ms for 1.5 s passes a 500 ms
// timeout whole; one that goes quiet for longer than it is cut.
func TestStreamIdleTimeout(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{Proxy: proxy.Config{ResponseHeaderTimeout: 500 * time.Millisecond}})
	r.register("hello-v001", "stream", backend(t, "stream", func(w http.ResponseWriter, req *http.Request) {
		gap := 150 * time.Millisecond
		if req.URL.Path == "/quiet" {
			gap = 1500 * time.Millisecond
		}
		for i := range 10 {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
			if i == 5 || req.URL.Path != "/quiet" {
				time.Sleep(gap)
			}
		}
	}))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	read := func(path string) (string, error) {
		req, _ := http.NewRequest("GET", url+path, nil)
		req.Host = "hello"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	body, err := read("/steady")
	if err != nil || strings.Count(body, "chunk") != 10 {
		t.Fatalf("a steady 1.5 s stream through a 500 ms idle timeout: %d chunks, %v", strings.Count(body, "chunk"), err)
	}
	body, _ = read("/quiet")
	if strings.Count(body, "chunk") == 10 {
		t.Fatal("a stream quiet for 1.5 s passed a 500 ms idle timeout")
	}
}

// dialFrom opens a connection to addr from the loopback address local
// (127.0.0.0/8 is all loopback on Linux), closed when the test ends.
func dialFrom(t *testing.T, local, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// TestOneClientCannotTakeTheEdge: one address (127.0.0.2) opens 3× the
// router's MaxConns, each connection sending one byte and holding it (the
// issue's slowloris). Its connections past MaxConnsPerClient are closed at
// once, and every request from other addresses is served: without the per-
// client cap the held connections spend MaxConns and they are answered 503.
func TestOneClientCannotTakeTheEdge(t *testing.T) {
	r := newRig(t, 1)
	const maxConns, perClient = 60, 20
	svc, url := r.startRouter(router.Config{Proxy: proxy.Config{MaxConns: maxConns, MaxConnsPerClient: perClient, HeaderTimeout: time.Minute}})
	r.register("hello-v001", "a", backend(t, "a", nil))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	addr := strings.TrimPrefix(url, "http://")
	held := 0
	for range 3 * maxConns {
		c, err := dialFrom(t, "127.0.0.2", addr)
		if err != nil {
			continue // the backlog is full: refused by the kernel
		}
		if _, err := c.Write([]byte("G")); err == nil {
			held++
		}
	}
	// the router has accepted the attacker's connections (its count of
	// refusals reaches what was over the cap) before the others come
	over := uint64(held - perClient)
	deadline := time.Now().Add(10 * time.Second)
	for svc.Refused()[proxy.RefusedPerClient] < over {
		if time.Now().After(deadline) {
			t.Fatalf("refused %d of the attacker's connections, want %d", svc.Refused()[proxy.RefusedPerClient], over)
		}
		time.Sleep(10 * time.Millisecond)
	}
	served := 0
	for i := range 40 {
		local := fmt.Sprintf("127.0.0.%d", 10+i%20) // 20 other clients, 2 connections each
		c, err := dialFrom(t, local, addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: hello\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode == 200 {
			served++
		}
	}
	if served != 40 {
		t.Fatalf("other clients served %d of 40 while one address held %d connections", served, held)
	}
}

// TestHeaderDeadline: a connection whose headers do not end within
// HeaderTimeout is closed (slowloris with partial headers), while a body
// that keeps coming after its headers has RequestTimeout.
func TestHeaderDeadline(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{Proxy: proxy.Config{HeaderTimeout: 300 * time.Millisecond, RequestTimeout: 20 * time.Second}})
	r.register("hello-v001", "a", backend(t, "a", func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		fmt.Fprintf(w, "%d", len(b))
	}))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	addr := strings.TrimPrefix(url, "http://")
	slow, err := dialFrom(t, "127.0.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	fmt.Fprint(slow, "GET / HTTP/1.1\r\nHost: hel")
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("partial headers: the router kept the connection for %s (%v)", time.Since(start), err)
	}
	body, err := dialFrom(t, "127.0.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	body.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprint(body, "POST / HTTP/1.1\r\nHost: hello\r\nContent-Length: 8\r\n\r\n")
	for range 8 { // 1.6 s of body: past HeaderTimeout, within RequestTimeout
		time.Sleep(200 * time.Millisecond)
		if _, err := body.Write([]byte("x")); err != nil {
			t.Fatalf("the body's connection was closed: %v", err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(got) != "8" {
		t.Fatalf("a slow body: %d %q", resp.StatusCode, got)
	}
}

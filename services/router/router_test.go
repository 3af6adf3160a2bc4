package router_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/services/router/proxy"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/prom"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/routing"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

type rig struct {
	t         *testing.T
	s         *testkit.Server
	ctx       context.Context
	nc        *nats.Conn
	instances jetstream.KeyValue
	tap       *nats.Subscription
}

func newRig(t *testing.T, capacity int) *rig {
	return newRigSpec(t, spec.Service{Name: "hello", Owner: "t", Capacity: capacity, Hostnames: []string{"hello.example.com"}, Artifact: spec.Artifact{Command: []string{"x"}}})
}

// newRigSpec is a rig whose hello has the spec sp.
func newRigSpec(t *testing.T, sp spec.Service) *rig {
	s := testkit.Start(t)
	ctx := testkit.Context(t, 60*time.Second)
	nc := s.Conn(t)
	js, _ := jetstream.New(nc)
	kv, _ := js.KeyValue(ctx, topology.BucketServices)
	if _, err := spec.Apply(ctx, kv, sp); err != nil {
		t.Fatal(err)
	}
	inst, _ := js.KeyValue(ctx, topology.BucketInstances)
	tap, _ := nc.SubscribeSync(">")
	nc.Flush()
	return &rig{t: t, s: s, ctx: ctx, nc: nc, instances: inst, tap: tap}
}

// startRouter runs a router service and returns its data plane URL.
func (r *rig) startRouter(cfg router.Config) (*router.Service, string) {
	cfg.Topology = topology.DefaultOptions()
	cfg.HTTP = "127.0.0.1:0"
	if cfg.MetricsInterval == 0 {
		cfg.MetricsInterval = 100 * time.Millisecond
	}
	svc := router.New(cfg, r.s.Conn(r.t), logging.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	r.t.Cleanup(func() { cancel(); <-done })
	for svc.Addr() == nil || !r.pinged(cfg.ID) {
		select {
		case err := <-done:
			r.t.Fatalf("router stopped: %v", err)
		case <-r.ctx.Done():
			r.t.Fatal("router did not start")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return svc, "http://" + svc.Addr().String()
}

func (r *rig) pinged(id string) bool {
	resp, err := r.nc.Request(router.AppliedSubject, []byte("hello"), 200*time.Millisecond)
	return err == nil && (id == "" || strings.Contains(string(resp.Data), id))
}

// register puts an instance in discovery, as the provisioner does.
func (r *rig) register(group, id, addr string) {
	r.t.Helper()
	e := discovery.Entry{ID: id, Service: "hello", Group: group, Address: addr, State: discovery.StateUp, Started: time.Now()}
	if _, err := r.instances.Put(r.ctx, discovery.Key("hello", group, id), e.Encode()); err != nil {
		r.t.Fatal(err)
	}
}

// command publishes a traffic command and returns the router's answer:
// its changed, switched, restored or refused.
func (r *rig) command(k events.Kind, c events.TrafficCommand) events.Event {
	r.t.Helper()
	final, _ := r.traffic(k, c)
	return final
}

func backend(t *testing.T, name string, h http.HandlerFunc) string {
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Seen-Request-Id", r.Header.Get("X-Request-Id"))
			w.Header().Set("X-Seen-Forwarded-For", r.Header.Get("X-Forwarded-For"))
			w.Header().Set("X-Seen-Host", r.Host)
			fmt.Fprint(w, name)
		}
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func get(t *testing.T, url, host string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestRoutingHeadersAndErrors(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{Proxy: proxy.Config{MaxBodyBytes: 1024}})
	r.register("hello-v001", "a", backend(t, "A", nil))
	if ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"}); ev.Type != events.TrafficSwitched.Type() {
		t.Fatalf("switch answered %s %s", ev.Type, ev.Data)
	}
	for _, host := range []string{"hello", "hello.localhost:8080", "hello.example.com"} {
		resp, body := get(t, url, host, map[string]string{"X-Request-Id": "req-42"})
		if resp.StatusCode != 200 || body != "A" {
			t.Fatalf("host %s: %d %q", host, resp.StatusCode, body)
		}
		if resp.Header.Get("X-Seen-Request-Id") != "req-42" || resp.Header.Get("X-Seen-Forwarded-For") != "127.0.0.1" || resp.Header.Get("X-Seen-Host") != host {
			t.Fatalf("headers the backend saw: %v", resp.Header)
		}
	}
	if resp, _ := get(t, url, "hello", nil); len(resp.Header.Get("X-Seen-Request-Id")) != 24 {
		t.Fatalf("no generated X-Request-Id: %q", resp.Header.Get("X-Seen-Request-Id"))
	}
	if resp, _ := get(t, url, "nosuch.localhost", nil); resp.StatusCode != 503 || resp.Header.Get(proxy.ErrorHeader) == "" {
		t.Fatalf("unknown host: %d", resp.StatusCode)
	}
	// a huge header: the router answers 431 once its 64 KiB read buffer is
	// full and closes with the rest unread, which resets the connection;
	// the answer is read while the request is still being written (a
	// client that only reads once it has written may see the reset first)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: hello\r\nX-Huge: %s\r\n\r\n", strings.Repeat("x", 100<<10))
	if huge, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || huge.StatusCode != 431 {
		t.Fatalf("huge header: %v %v", huge, err)
	}
	big, _ := http.NewRequest("POST", url, strings.NewReader(strings.Repeat("x", 2048)))
	big.Host = "hello"
	resp, err := http.DefaultClient.Do(big)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("body over the limit: %d", resp.StatusCode)
	}

	// traffic to a group with no instance up, or to another service's
	// group, is refused: a set never blackholes the service
	for _, w := range []map[string]int{
		{"hello-v001": 0, "hello-v007": 1000},
		{"hello-v001": 500, "world-v001": 500},
		{"hello-v001": 1000, "not a group": 0},
	} {
		ev := r.command(events.TrafficSet, events.TrafficCommand{Weights: w})
		var tc events.TrafficCommand
		ev.DecodeData(&tc)
		if ev.Type != events.TrafficRefused.Type() || tc.Reason == "" {
			t.Fatalf("set %v answered %s %q", w, ev.Type, tc.Reason)
		}
	}
	if resp, _ = get(t, url, "hello", nil); resp.StatusCode != 200 {
		t.Fatalf("after refused sets: %d %q", resp.StatusCode, resp.Header.Get(proxy.ErrorHeader))
	}
	if ev := r.command(events.TrafficSet, events.TrafficCommand{Weights: map[string]int{"hello-v001": 1001}}); ev.Type != events.TrafficRefused.Type() {
		t.Fatalf("weight 1001 answered %s", ev.Type)
	}
}

func TestRetryLandsOnLiveInstance(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{})
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close() // discovery still lists it: every try there fails to dial
	r.register("hello-v001", "dead", deadAddr)
	r.register("hello-v001", "live", backend(t, "live", nil))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	for i := range 50 {
		req, _ := http.NewRequest("POST", url, strings.NewReader("body")) // even a POST: nothing reached the dead one
		req.Host = "hello"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "live" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
	if retries := r.sampled(func(m metrics.Sample) uint64 { return m.Retries }); retries == 0 {
		t.Fatal("no retry counted in the metrics samples")
	}
}

// sampled sums a field over the metrics samples of hello-v001 seen within 3 s.
func (r *rig) sampled(field func(metrics.Sample) uint64) uint64 {
	var sum uint64
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		m, err := r.tap.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		if strings.HasPrefix(m.Subject, "metrics.hello.hello-v001.router.") {
			s, _ := metrics.Decode(m.Data)
			if sum += field(s); sum > 0 {
				return sum
			}
		}
	}
	return sum
}

func TestEjectionAndRecovery(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{Proxy: proxy.Config{Rules: routing.Rules{EjectAfter: 3, EjectFor: 500 * time.Millisecond}}})
	var healthy atomic.Bool
	r.register("hello-v001", "flaky", backend(t, "flaky", func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "broken", 500)
			return
		}
		fmt.Fprint(w, "flaky")
	}))
	r.register("hello-v001", "good", backend(t, "good", nil))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	fails := 0
	for range 200 {
		if resp, _ := get(t, url, "hello", nil); resp.StatusCode == 500 {
			fails++
		}
	}
	if fails < 3 || fails > 10 {
		t.Fatalf("%d of 200 requests failed: ejection should stop them after 3 (plus a retry after the back-off)", fails)
	}
	for range 50 {
		if resp, _ := get(t, url, "hello", nil); resp.StatusCode != 200 {
			t.Fatalf("request failed while flaky is ejected: %d", resp.StatusCode)
		}
	}
	healthy.Store(true)
	// once its ejection (500 ms) ends, the recovered instance gets traffic again
	seen := false
	for deadline := time.Now().Add(5 * time.Second); !seen && time.Now().Before(deadline); {
		_, body := get(t, url, "hello", nil)
		seen = body == "flaky"
	}
	if !seen {
		t.Fatal("the recovered instance never got traffic again")
	}
}

func TestStreamingAndWebSocket(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{})
	release := make(chan struct{})
	r.register("hello-v001", "s", backend(t, "s", func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Upgrade") == "websocket" {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			buf.Flush()
			line, _ := buf.ReadString('\n') // echo one line both ways
			buf.WriteString("echo " + line)
			buf.Flush()
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: second\n\n")
	}))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})

	req, _ := http.NewRequest("GET", url+"/events", nil)
	req.Host = "hello"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	first, _ := br.ReadString('\n') // arrives while the backend still holds the stream open
	close(release)
	rest, _ := io.ReadAll(br)
	resp.Body.Close()
	if first != "data: first\n" || !strings.Contains(string(rest), "second") {
		t.Fatalf("stream: %q then %q", first, rest)
	}

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: hello\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	cr := bufio.NewReader(conn)
	wsResp, err := http.ReadResponse(cr, nil)
	if err != nil || wsResp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", wsResp, err)
	}
	fmt.Fprint(conn, "ping\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := cr.ReadString('\n'); line != "echo ping\n" {
		t.Fatalf("websocket echo %q", line)
	}
}

func TestSwitchGuardRefuses(t *testing.T) {
	r := newRig(t, 3)
	r.startRouter(router.Config{})
	r.register("hello-v002", "only-one", backend(t, "x", nil))
	ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v002"})
	if ev.Type != events.TrafficRefused.Type() || !strings.Contains(string(ev.Data), "1 healthy instances, fewer than the capacity 3") {
		t.Fatalf("%s %s", ev.Type, ev.Data)
	}
}

func TestTwoRoutersConvergeBeforeTheSwitchIsAnnounced(t *testing.T) {
	r := newRig(t, 1)
	_, url1 := r.startRouter(router.Config{ID: "one"})
	_, url2 := r.startRouter(router.Config{ID: "two"})
	r.register("hello-v001", "a", backend(t, "A", nil))
	r.register("hello-v002", "b", backend(t, "B", nil))
	for i, want := range []string{"A", "B", "A", "B"} {
		group := map[string]string{"A": "hello-v001", "B": "hello-v002"}[want]
		ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: group})
		var d events.Traffic
		ev.DecodeData(&d)
		// the moment the switch is announced, both routers serve the new table
		for _, u := range []string{url1, url2} {
			if _, body := get(t, u, "hello", nil); body != want {
				t.Fatalf("switch %d: %s answered %q right after traffic.switched, want %q", i, u, body, want)
			}
		}
		answers := 0
		inbox := nats.NewInbox()
		sub, _ := r.nc.SubscribeSync(inbox)
		r.nc.PublishRequest(router.AppliedSubject, inbox, []byte("hello"))
		for {
			m, err := sub.NextMsg(300 * time.Millisecond)
			if err != nil {
				break
			}
			var a router.Applied
			json.Unmarshal(m.Data, &a)
			if a.Revision >= d.Revision {
				answers++
			}
		}
		sub.Unsubscribe()
		if answers != 2 {
			t.Fatalf("switch %d: %d routers report revision %d", i, answers, d.Revision)
		}
	}
}

func TestMetricsSamplesAndPrometheus(t *testing.T) {
	r := newRig(t, 1)
	admin, _ := net.Listen("tcp", "127.0.0.1:0")
	adminAddr := admin.Addr().String()
	admin.Close()
	_, url := r.startRouter(router.Config{Admin: adminAddr})
	r.register("hello-v001", "a", backend(t, "A", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/fail" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "A")
	}))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	for range 10 {
		get(t, url, "hello", nil)
	}
	get(t, url+"/fail", "hello", nil)
	var total metrics.Sample
	deadline := time.Now().Add(5 * time.Second)
	for total.Requests < 11 && time.Now().Before(deadline) {
		m, err := r.tap.NextMsg(time.Second)
		if err != nil || !strings.HasPrefix(m.Subject, "metrics.hello.hello-v001.router.") {
			continue
		}
		s, _ := metrics.Decode(m.Data)
		total.Requests += s.Requests
		total.Status2xx += s.Status2xx
		total.Status5xx += s.Status5xx
		for i, n := range s.Latency {
			if i < len(s.BucketsMicros) || n > 0 {
				total.LatencySumNs += n
			}
		}
	}
	if total.Requests != 11 || total.Status2xx != 10 || total.Status5xx != 1 || total.LatencySumNs != 11 {
		t.Fatalf("samples summed to %+v", total)
	}
	// the exposition is parsed by the Prometheus library's own parser
	fams, err := prom.Scrape("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	// backend_instance, not instance (Prometheus's own target label);
	// the status class is the code label of one metric
	a := map[string]string{"service": "hello", "group": "hello-v001", "backend_instance": "a"}
	with := func(k, v string) map[string]string {
		l := map[string]string{k: v}
		for k, v := range a {
			l[k] = v
		}
		return l
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"redblack_router_requests_total", a, 11},
		{"redblack_router_responses_total", with("code", "5xx"), 1},
		{"redblack_router_responses_total", with("code", "2xx"), 10},
		{"redblack_router_latency_seconds", a, 11},
		{"redblack_router_backends", nil, 1},
	} {
		if got, ok := fams.Value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "instance" {
					t.Errorf("%s has an instance label: Prometheus would rename it exported_instance", name)
				}
			}
		}
	}
	for _, name := range []string{"process_cpu_seconds_total", "go_goroutines"} {
		if _, ok := fams.Value(name, nil); !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	testkit.Promtool(t, "http://"+adminAddr+"/metrics")
}

func TestRestoreGoesBackToThePreviousGroup(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{})
	if ev := r.command(events.TrafficRestore, events.TrafficCommand{}); ev.Type != events.TrafficRefused.Type() {
		t.Fatalf("restore with nothing to restore: %s", ev.Type)
	}
	r.register("hello-v001", "a", backend(t, "A", nil))
	r.register("hello-v002", "b", backend(t, "B", nil))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v002"})
	for _, want := range []string{"A", "B"} { // restore twice: back, then forth
		ev := r.command(events.TrafficRestore, events.TrafficCommand{})
		var d events.Traffic
		ev.DecodeData(&d)
		if ev.Type != events.TrafficRestored.Type() || d.Active != map[string]string{"A": "hello-v001", "B": "hello-v002"}[want] {
			t.Fatalf("restore: %s %s", ev.Type, ev.Data)
		}
		if _, body := get(t, url, "hello", nil); body != want {
			t.Fatalf("after restore %q, want %q", body, want)
		}
	}
}

func TestDedicatedPortServesOneService(t *testing.T) {
	r := newRig(t, 1)
	r.startRouter(router.Config{})
	r.register("hello-v001", "a", backend(t, "A", nil))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	js, _ := jetstream.New(r.nc)
	kv, _ := js.KeyValue(r.ctx, topology.BucketServices)
	if _, err := spec.Apply(r.ctx, kv, spec.Service{Name: "hello", Owner: "t", Capacity: 1, Port: port, Artifact: spec.Artifact{Command: []string{"x"}}}); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var body string
	for deadline := time.Now().Add(5 * time.Second); body != "A" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = "any-host-at-all"
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
		}
	}
	if body != "A" {
		t.Fatalf("dedicated port answered %q", body)
	}
}

// An entry that ages out of discovery (the bucket's TTL: after an outage of
// the whole cluster every entry does at once, before the provisioner's next
// heartbeat) stays routed for one more TTL, and a heartbeat within it keeps
// it; the provisioner's explicit delete removes it at once; an entry never
// refreshed goes once the grace is over.
func TestExpiredEntryStaysRoutedForAGrace(t *testing.T) {
	const ttl = time.Second
	opts := topology.DefaultOptions()
	opts.InstanceTTL = ttl
	s := testkit.Start(t, testkit.WithTopology(opts))
	ctx := testkit.Context(t, 60*time.Second)
	nc := s.Conn(t)
	js, _ := jetstream.New(nc)
	skv, _ := js.KeyValue(ctx, topology.BucketServices)
	if _, err := spec.Apply(ctx, skv, spec.Service{Name: "hello", Owner: "t", Capacity: 1, Artifact: spec.Artifact{Command: []string{"x"}}}); err != nil {
		t.Fatal(err)
	}
	inst, _ := js.KeyValue(ctx, topology.BucketInstances)
	tap, _ := nc.SubscribeSync(">")
	r := &rig{t: t, s: s, ctx: ctx, nc: nc, instances: inst, tap: tap}
	cfg := router.Config{ID: "one", HTTP: "127.0.0.1:0", MetricsInterval: 100 * time.Millisecond, Topology: opts}
	svc := router.New(cfg, s.Conn(t), logging.Nop())
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for svc.Addr() == nil || !r.pinged("one") {
		time.Sleep(20 * time.Millisecond)
	}
	url := "http://" + svc.Addr().String()
	a := backend(t, "A", nil)
	r.register("hello-v001", "a", a)
	if ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"}); ev.Type != events.TrafficSwitched.Type() {
		t.Fatalf("switch: %s %s", ev.Type, ev.Data)
	}
	status := func() int {
		resp, _ := get(t, url, "hello", nil)
		return resp.StatusCode
	}
	key := discovery.Key("hello", "hello-v001", "a")
	w, err := inst.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	expired := func() time.Time {
		for e := range w.Updates() {
			if e != nil && e.Operation() == jetstream.KeyValuePurge {
				return e.Created() // the marker's time: the update may wait in the channel
			}
		}
		t.Fatal("watch ended")
		return time.Time{}
	}
	// 1. expired, then refreshed within the grace: served throughout
	at := expired()
	if code := status(); code != 200 {
		t.Fatalf("right after the expiry: %d, want the instance still served", code)
	}
	r.register("hello-v001", "a", a)
	for time.Since(at) < 2*ttl {
		if code := status(); code != 200 {
			t.Fatalf("%s after an expiry and a heartbeat: %d", time.Since(at).Round(time.Millisecond), code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// 2. expired and never refreshed: dropped once the grace is over
	at = expired()
	for status() == 200 {
		if time.Since(at) > 5*ttl {
			t.Fatal("an entry never refreshed is still routed 5 TTLs after it expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(at); d < ttl {
		t.Fatalf("dropped %s after its expiry, before the grace (%s)", d, ttl)
	}
	// 3. deleted by the provisioner: dropped at once
	r.register("hello-v001", "a", a)
	for status() != 200 {
		time.Sleep(20 * time.Millisecond)
	}
	if err := inst.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	for status() == 200 {
		if time.Since(deleted) > ttl/2 {
			t.Fatal("a deleted entry is still routed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A router that answered lately is waited for before a change is
// announced (its connection may be coming back, with its last table
// serving); one gone for longer than the memory is not. The other router
// here is a ghost that answers router.applied once and then falls silent,
// as a router does whose node died.
func TestSwitchWaitsForARouterSeenLately(t *testing.T) {
	const memory = 3 * time.Second
	r := newRig(t, 1)
	r.startRouter(router.Config{ID: "one", RouterMemory: memory})
	r.register("hello-v001", "a", backend(t, "A", nil))
	r.register("hello-v002", "b", backend(t, "B", nil))
	ghost, err := r.nc.Subscribe(router.AppliedSubject, func(m *nats.Msg) {
		b, _ := json.Marshal(router.Applied{Router: "ghost", Revision: 1 << 40, Up: map[string]int{"hello-v001": 9, "hello-v002": 9}})
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	ping, err := r.nc.Subscribe("$SRV.PING.redblack-router", func(m *nats.Msg) { _ = m.Respond([]byte(`{"name":"router"}`)) })
	if err != nil {
		t.Fatal(err)
	}
	// the ghost takes part in a switch, and is known from then on
	if ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"}); ev.Type != events.TrafficSwitched.Type() {
		t.Fatalf("switch: %s", ev.Data)
	}
	ghost.Unsubscribe()
	ping.Unsubscribe()
	gone := time.Now()
	ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v002"})
	took := time.Since(gone)
	if ev.Type != events.TrafficSwitched.Type() {
		t.Fatalf("switch after a router fell silent: %s %s", ev.Type, ev.Data)
	}
	if took < memory-time.Second || took > memory+2*time.Second {
		t.Fatalf("announced %s after the other router fell silent; want it waited for about %s, no longer", took.Round(time.Millisecond), memory)
	}
	t.Logf("announced %s after the other router fell silent (memory %s)", took.Round(time.Millisecond), memory)
	// long gone, it is waited for no more
	start := time.Now()
	if ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"}); ev.Type != events.TrafficSwitched.Type() || time.Since(start) > time.Second {
		t.Fatalf("a third switch: %s after %s", ev.Type, time.Since(start))
	}
}

// TestNoChangeByHandUnderARelease: while a release holds the service's
// lock, a switch, a set or a restore by hand is refused with the release's
// id and changes nothing; once the lock is free the same switch applies
// (issue 28: a switch by hand during a bake let the release complete on a
// group users were not served by).
func TestNoChangeByHandUnderARelease(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{})
	r.register("hello-v001", "a", backend(t, "A", nil))
	r.register("hello-v002", "b", backend(t, "B", nil))
	if ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"}); ev.Type != events.TrafficSwitched.Type() {
		t.Fatalf("switch with no release in flight answered %s %s", ev.Type, ev.Data)
	}
	js, _ := jetstream.New(r.nc)
	kv, err := js.KeyValue(r.ctx, topology.BucketReleases)
	if err != nil {
		t.Fatal(err)
	}
	store := release.Store{KV: kv}
	acc, err := store.Accept(r.ctx, release.Record{ID: "rel-9", Service: "hello", Version: "v9"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		k  events.Kind
		tc events.TrafficCommand
	}{
		{events.TrafficSwitch, events.TrafficCommand{Group: "hello-v002"}},
		{events.TrafficSet, events.TrafficCommand{Weights: map[string]int{"hello-v001": 500, "hello-v002": 500}}},
		{events.TrafficRestore, events.TrafficCommand{}},
	} {
		ev := r.command(c.k, c.tc)
		var tc events.TrafficCommand
		_ = ev.DecodeData(&tc)
		if ev.Type != events.TrafficRefused.Type() || !strings.Contains(tc.Reason, "rel-9") {
			t.Fatalf("%s by hand under release rel-9 answered %s %q", c.k.Type(), ev.Type, tc.Reason)
		}
	}
	for range 20 {
		if _, body := get(t, url, "hello", nil); body != "A" {
			t.Fatalf("a refused change moved the traffic: %q", body)
		}
	}
	if err := store.Unlock(r.ctx, "hello", acc.Record.ID); err != nil {
		t.Fatal(err)
	}
	if ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v002"}); ev.Type != events.TrafficSwitched.Type() {
		t.Fatalf("switch once the lock is free answered %s %s", ev.Type, ev.Data)
	}
}

// TestSamplesByInstance: the router's samples break each group's counts
// down by the instance that served them, and the breakdown adds up to the
// sample (metrics.Sample.Validate checks it bucket by bucket).
func TestSamplesByInstance(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{Proxy: proxy.Config{Rules: routing.Rules{EjectAfter: 1000, EjectFor: time.Millisecond}}})
	r.register("hello-v001", "good", backend(t, "good", nil))
	r.register("hello-v001", "bad", backend(t, "bad", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "broken", 500) }))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	sent, failed := 0, 0
	for range 200 {
		resp, _ := get(t, url, "hello", nil)
		sent++
		if resp.StatusCode == 500 {
			failed++
		}
	}
	if failed == 0 || failed == sent {
		t.Fatalf("%d of %d failed: want both instances to serve", failed, sent)
	}
	byInstance := map[string]metrics.InstanceSample{}
	var requests uint64
	deadline := time.Now().Add(5 * time.Second)
	for requests < uint64(sent) && time.Now().Before(deadline) {
		m, err := r.tap.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		if !strings.HasPrefix(m.Subject, "metrics.hello.hello-v001.router.") {
			continue
		}
		s, err := metrics.DecodeStrict(m.Subject, m.Data)
		if err == nil {
			err = s.Validate(time.Now())
		}
		if err != nil {
			t.Fatalf("sample refused: %v", err)
		}
		requests += s.Requests
		if s.Requests > 0 && len(s.Instances) == 0 {
			t.Fatalf("a sample of %d requests without its instances", s.Requests)
		}
		for _, in := range s.Instances {
			b := byInstance[in.ID]
			b.Requests += in.Requests
			b.Errors += in.Errors
			byInstance[in.ID] = b
		}
	}
	good, bad := byInstance["good"], byInstance["bad"]
	if requests != uint64(sent) || good.Requests+bad.Requests != uint64(sent) {
		t.Fatalf("samples hold %d requests, their instances %d+%d, of %d sent", requests, good.Requests, bad.Requests, sent)
	}
	if good.Errors != 0 || bad.Errors != bad.Requests || bad.Errors != uint64(failed) {
		t.Fatalf("errors by instance: good %d of %d, bad %d of %d; %d failed", good.Errors, good.Requests, bad.Errors, bad.Requests, failed)
	}
}

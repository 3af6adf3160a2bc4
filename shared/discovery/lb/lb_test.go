package lb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/discovery/lb"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/routes"
	"github.com/redblack/redblack/shared/routing"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

type rig struct {
	t                 *testing.T
	s                 *testkit.Server
	ctx               context.Context
	js                jetstream.JetStream
	routes, instances jetstream.KeyValue
}

func newRig(t *testing.T) *rig {
	s := testkit.Start(t)
	ctx := testkit.Context(t, 60*time.Second)
	js, _ := jetstream.New(s.Conn(t))
	r := &rig{t: t, s: s, ctx: ctx, js: js}
	r.routes, _ = js.KeyValue(ctx, topology.BucketRoutes)
	r.instances, _ = js.KeyValue(ctx, topology.BucketInstances)
	return r
}

// client starts a discovery client on a connection of its own.
func (r *rig) client() *lb.Client {
	c, err := lb.Start(r.ctx, r.s.Conn(r.t), lb.Config{MetricsInterval: 100 * time.Millisecond})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(c.Close)
	return c
}

// instance serves name on a real port and registers it in discovery, as
// the provisioner does.
func (r *rig) instance(group, id string) string {
	r.t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		w.Header().Set("X-Seen-Host", req.Host)
		fmt.Fprint(w, group)
	}))
	r.t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	r.register(group, id, addr)
	return addr
}

func (r *rig) register(group, id, addr string) {
	r.t.Helper()
	e := discovery.Entry{ID: id, Service: "api", Group: group, Address: addr, State: discovery.StateUp, Started: time.Now()}
	if _, err := r.instances.Put(r.ctx, discovery.Key("api", group, id), e.Encode()); err != nil {
		r.t.Fatal(err)
	}
}

// route sets api's weights, as the router's commit does, and returns the
// revision.
func (r *rig) route(weights map[string]int) uint64 {
	r.t.Helper()
	_, rev, err := routes.Update(r.ctx, r.routes, "api", func(rt *routes.Route) error {
		rt.Weights = weights
		return nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return rev
}

// await polls cond every 5 ms until it holds or the test's time is up.
func (r *rig) await(what string, cond func() bool) time.Duration {
	r.t.Helper()
	start := time.Now()
	for !cond() {
		select {
		case <-r.ctx.Done():
			r.t.Fatalf("%s: not within %s", what, time.Since(start))
		case <-time.After(5 * time.Millisecond):
		}
	}
	return time.Since(start)
}

func call(t *testing.T, c *lb.Client, method, body string) (int, string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://api/v1/things?x=1", rd)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), nil
}

// The route's weights are honoured (a chi-square test, as the router's),
// and a switch reaches the client within the routes' propagation time.
func TestWeightsAndSwitch(t *testing.T) {
	r := newRig(t)
	r.instance("api-v001", "a1")
	r.instance("api-v001", "a2")
	r.instance("api-v002", "b1")
	r.route(map[string]int{"api-v001": 900, "api-v002": 100})
	c := r.client()
	r.await("route in the client", func() bool { return c.Revision("api") > 0 })
	const n = 4000
	counts := map[string]float64{}
	for range n {
		code, body, err := call(t, c, "GET", "")
		if err != nil || code != 200 {
			t.Fatalf("call: %d %v", code, err)
		}
		counts[body]++
	}
	chi := 0.0
	for g, w := range map[string]float64{"api-v001": 0.9, "api-v002": 0.1} {
		e := n * w
		chi += (counts[g] - e) * (counts[g] - e) / e
	}
	// 1 degree of freedom, p = 1e-6: an honest client fails once in a
	// million runs (p = 0.001 would fail CI once in a thousand), while
	// weights honoured as 850/150 give a chi-square near 110.
	if chi > 23.93 {
		t.Fatalf("weights 900/100 not honoured: %v (chi-square %.1f)", counts, chi)
	}

	// a switch: every call after the client has the revision goes to v002
	rev := r.route(map[string]int{"api-v001": 0, "api-v002": 1000})
	took := r.await("switch in the client", func() bool { return c.Revision("api") >= rev })
	t.Logf("routes change → client routes by it: %s", took)
	if took > time.Second {
		t.Fatalf("the switch took %s to reach the client", took)
	}
	for range 200 {
		if _, body, err := call(t, c, "GET", ""); err != nil || body != "api-v002" {
			t.Fatalf("after the switch: %q %v", body, err)
		}
	}
	// and a rollback goes straight back
	rev = r.route(map[string]int{"api-v001": 1000, "api-v002": 0})
	r.await("rollback in the client", func() bool { return c.Revision("api") >= rev })
	if _, body, err := call(t, c, "GET", ""); err != nil || body != "api-v001" {
		t.Fatalf("after the rollback: %q %v", body, err)
	}
}

// A dead instance still listed in discovery: its calls are retried on a
// live one (even a POST, whose connection was never made), it is ejected,
// and the retries are counted in the samples.
func TestRetriesOnADeadInstance(t *testing.T) {
	r := newRig(t)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	r.register("api-v001", "dead", deadAddr)
	r.instance("api-v001", "live")
	r.route(map[string]int{"api-v001": 1000})
	c := r.client()
	r.await("route in the client", func() bool { return c.Revision("api") > 0 })
	sc := r.s.Conn(t)
	samples, _ := sc.SubscribeSync(subjects.GroupSamples("api", "api-v001"))
	sc.Flush() // the server has the subscription before any sample
	for i := range 100 {
		method, body := "GET", ""
		if i%2 == 1 {
			method, body = "POST", "payload"
		}
		code, got, err := call(t, c, method, body)
		if err != nil || code != 200 || got != "api-v001" {
			t.Fatalf("call %d (%s): %d %q %v", i, method, code, got, err)
		}
	}
	var retries, connErrors, requests uint64
	deadline := time.Now().Add(3 * time.Second)
	for requests < 100+connErrors && time.Now().Before(deadline) {
		m, err := samples.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		s, err := metrics.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if s.Router != c.ID() {
			t.Fatalf("sample from %q, want the client's id %q", s.Router, c.ID())
		}
		retries, connErrors, requests = retries+s.Retries, connErrors+s.ConnErrors, requests+s.Requests
	}
	// passive ejection: after 5 failures the dead one is skipped, so far
	// fewer than the ~50 calls that would have picked it failed there
	if retries == 0 || connErrors != retries || connErrors > 20 || requests != 100+connErrors {
		t.Fatalf("samples: %d requests, %d connection errors, %d retries; want 100 answered, each failure retried, the dead one ejected", requests, connErrors, retries)
	}
}

// A call that finds nowhere to go fails with a clear error, and no route
// at all is told apart from a group with no instance.
func TestNowhereToGo(t *testing.T) {
	r := newRig(t)
	c := r.client()
	if _, _, err := call(t, c, "GET", ""); !errors.Is(err, lb.ErrNoService) {
		t.Fatalf("no route: %v", err)
	}
	rev := r.route(map[string]int{"api-v001": 1000})
	r.await("route in the client", func() bool { return c.Revision("api") >= rev })
	if _, _, err := call(t, c, "GET", ""); !errors.Is(err, lb.ErrNoInstance) || !strings.Contains(err.Error(), "api") {
		t.Fatalf("no instance: %v", err)
	}
	if _, err := c.Pick("api"); !errors.Is(err, lb.ErrNoInstance) {
		t.Fatalf("Pick with no instance: %v", err)
	}
}

// The judges count a client's samples: it answers the callers' applied
// ping, which is how metrics.Directory knows the mesh's sources; as a
// discovery client, never as a router.
func TestJudgesKnowTheClient(t *testing.T) {
	r := newRig(t)
	r.instance("api-v001", "a1")
	r.route(map[string]int{"api-v001": 1000})
	c := r.client()
	d := metrics.Directory{NC: r.s.Conn(t)}
	if !d.Known(subjects.CallerPublisher("web"), c.ID()) {
		t.Fatalf("the directory does not know the client %s", c.ID())
	}
	if d.Known(subjects.PublisherRouter, c.ID()) {
		t.Fatal("the directory knows a discovery client as a router")
	}
	if d.Known(subjects.CallerPublisher("web"), "caller-forged") {
		t.Fatal("the directory knows an id nobody answers for")
	}
}

// Pick is local and allocates nothing.
func TestPickAllocatesNothing(t *testing.T) {
	r := newRig(t)
	r.instance("api-v001", "a1")
	r.instance("api-v002", "b1")
	r.route(map[string]int{"api-v001": 500, "api-v002": 500})
	c := r.client()
	r.await("route in the client", func() bool { return c.Revision("api") > 0 })
	allocs := testing.AllocsPerRun(1000, func() {
		b, err := c.Pick("api")
		if err != nil {
			t.Fatal(err)
		}
		c.Done(b, 200, nil, time.Millisecond)
	})
	if allocs != 0 {
		t.Fatalf("Pick and Done allocate %.1f times per call", allocs)
	}
}

// BenchmarkPick measures the pick: go test -bench Pick ./shared/discovery/lb
func BenchmarkPick(b *testing.B) {
	s := testkit.Start(b)
	ctx := testkit.Context(b, time.Minute)
	js, _ := jetstream.New(s.Conn(b))
	rkv, _ := js.KeyValue(ctx, topology.BucketRoutes)
	ikv, _ := js.KeyValue(ctx, topology.BucketInstances)
	for i := range 20 {
		g := fmt.Sprintf("api-v00%d", 1+i%2)
		e := discovery.Entry{ID: fmt.Sprint(i), Service: "api", Group: g, Address: fmt.Sprintf("127.0.0.1:%d", 20000+i), State: discovery.StateUp, Started: time.Now()}
		ikv.Put(ctx, discovery.Key("api", g, e.ID), e.Encode())
	}
	routes.Update(ctx, rkv, "api", func(rt *routes.Route) error {
		rt.Weights = map[string]int{"api-v001": 900, "api-v002": 100}
		return nil
	})
	c, err := lb.Start(ctx, s.Conn(b), lb.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for c.Revision("api") == 0 {
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		be, err := c.Pick("api")
		if err != nil {
			b.Fatal(err)
		}
		c.Done(be, 200, nil, time.Millisecond)
	}
}

// A client that stops publishes its last window's counts: an instance of a
// destroyed group loses none of the requests it sent from the judges'
// view (nor from the store's rate in the tiers demo).
func TestCloseFlushesTheLastWindow(t *testing.T) {
	r := newRig(t)
	r.instance("api-v001", "a1")
	r.route(map[string]int{"api-v001": 1000})
	c, err := lb.Start(r.ctx, r.s.Conn(t), lb.Config{MetricsInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r.await("route in the client", func() bool { return c.Revision("api") > 0 })
	sc := r.s.Conn(t)
	samples, _ := sc.SubscribeSync(subjects.GroupSamples("api", "api-v001"))
	sc.Flush() // the server has the subscription before any sample
	for range 7 {
		if code, _, err := call(t, c, "GET", ""); err != nil || code != 200 {
			t.Fatalf("call: %d %v", code, err)
		}
	}
	c.Close()
	m, err := samples.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no sample on Close: %v", err)
	}
	s, err := metrics.Decode(m.Data)
	if err != nil || s.Requests != 7 || s.Status2xx != 7 {
		t.Fatalf("last sample: %+v %v, want the 7 requests", s, err)
	}
}

// After a switch to a group that answers 500, while the previous group is
// alive, the client answers from it as the router does: the caller sees
// the old group's answer (routing.FallbackHeader says so), the samples
// count every failure of the new group and each rescue.
func TestRescueFromThePreviousGroup(t *testing.T) {
	r := newRig(t)
	r.instance("api-v001", "a1")
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	r.register("api-v002", "b1", strings.TrimPrefix(broken.URL, "http://"))
	_, rev, err := routes.Update(r.ctx, r.routes, "api", func(rt *routes.Route) error {
		rt.Weights, rt.Active, rt.Previous = map[string]int{"api-v001": 0, "api-v002": 1000}, "api-v002", "api-v001"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := r.client()
	r.await("route in the client", func() bool { return c.Revision("api") >= rev })
	sc := r.s.Conn(t)
	samples, _ := sc.SubscribeSync(subjects.GroupSamples("api", "api-v002"))
	sc.Flush() // the server has the subscription before any sample
	for i := range 50 {
		req, _ := http.NewRequest("GET", "http://api/", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "api-v001" || resp.Header.Get(routing.FallbackHeader) != "api-v001" {
			t.Fatalf("call %d: %d %q %q", i, resp.StatusCode, b, resp.Header.Get(routing.FallbackHeader))
		}
	}
	var reqs, failed, rescued uint64
	deadline := time.Now().Add(3 * time.Second)
	// a rescue is counted when its answer is done: it may fall in the
	// window after its failure's
	for (reqs < 50 || rescued < 50) && time.Now().Before(deadline) {
		m, err := samples.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		s, _ := metrics.Decode(m.Data)
		reqs, failed, rescued = reqs+s.Requests, failed+s.Errors(), rescued+s.Rescued
	}
	if reqs != 50 || failed != 50 || rescued != 50 {
		t.Fatalf("samples of the broken group: %d requests, %d failed, %d rescued; want 50 each", reqs, failed, rescued)
	}
}

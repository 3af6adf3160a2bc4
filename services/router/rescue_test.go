package router_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/services/router/proxy"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/topology"
)

// failing is a backend that answers every request 500.
func failing(t *testing.T) string {
	return backend(t, "broken", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "broken", http.StatusInternalServerError)
	})
}

// send makes n requests of method and counts the answers: ok (200), failed
// (anything else), and rescued (with X-Redblack-Fallback naming group).
func send(t *testing.T, url, method string, n int, fallback string) (ok, failed, rescued int) {
	t.Helper()
	for range n {
		req, _ := http.NewRequest(method, url, strings.NewReader("x"))
		req.Host = "hello"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			ok++
		} else {
			failed++
		}
		if f := resp.Header.Get(proxy.FallbackHeader); f != "" {
			if f != fallback || resp.StatusCode != 200 {
				t.Fatalf("rescued by %q with %d, want %s and 200", f, resp.StatusCode, fallback)
			}
			rescued++
		}
	}
	return ok, failed, rescued
}

// counts sums the samples of a group until they hold want requests (or 3 s).
func counts(t *testing.T, nc *nats.Conn, sub *nats.Subscription, want uint64) (requests, failed, rescued uint64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for requests < want && time.Now().Before(deadline) {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		s, err := metrics.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		requests, failed, rescued = requests+s.Requests, failed+s.Errors(), rescued+s.Rescued
	}
	return requests, failed, rescued
}

// A new group that answers every request 500: during its canary,
// production answers its idempotent requests; after the switch, the old
// group does (while it is alive). Users see none of those failures; the
// samples still count every one on the new group, and the rescues. A POST
// is not rescued unless the spec says so.
func TestRescueFromTheFallback(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{})
	r.register("hello-v001", "a", backend(t, "A", nil))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	r.register("hello-v002", "b", failing(t))
	samples, _ := r.nc.SubscribeSync(subjects.GroupSamples("hello", "hello-v002"))
	r.nc.Flush()

	// the canary: half the traffic on the broken group
	if ev := r.command(events.TrafficSet, events.TrafficCommand{Weights: map[string]int{"hello-v001": 500, "hello-v002": 500}}); ev.Type != events.TrafficChanged.Type() {
		t.Fatalf("set answered %s", ev.Type)
	}
	ok, failed, rescued := send(t, url, "GET", 400, "hello-v001")
	if ok != 400 || failed != 0 || rescued < 120 {
		t.Fatalf("canary: %d ok, %d failed, %d rescued of 400 GETs; want all ok, about half rescued", ok, failed, rescued)
	}
	_, postFailed, postRescued := send(t, url, "POST", 100, "hello-v001")
	if postFailed < 20 || postRescued != 0 {
		t.Fatalf("canary: POSTs %d failed, %d rescued; want the broken group's 500s seen and none rescued", postFailed, postRescued)
	}
	reqs, errs, res := counts(t, r.nc, samples, uint64(rescued+postFailed))
	if reqs != errs || res != uint64(rescued) || reqs != uint64(rescued+postFailed) {
		t.Fatalf("samples of the broken group: %d requests, %d failed, %d rescued; want %d failed (every one), %d rescued", reqs, errs, res, rescued+postFailed, rescued)
	}

	// the bake: all traffic on the broken group, the old one alive
	if ev := r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v002"}); ev.Type != events.TrafficSwitched.Type() {
		t.Fatalf("switch answered %s", ev.Type)
	}
	ok, failed, rescued = send(t, url, "GET", 300, "hello-v001")
	if ok != 300 || failed != 0 || rescued != 300 {
		t.Fatalf("bake: %d ok, %d failed, %d rescued of 300 GETs; want all rescued", ok, failed, rescued)
	}
	reqs, errs, res = counts(t, r.nc, samples, 300)
	if reqs < 300 || errs != reqs || res != reqs {
		t.Fatalf("bake samples: %d requests, %d failed, %d rescued", reqs, errs, res)
	}
}

// The budget: a fallback serves, its own requests and rescues together,
// at most RescueRatio of the service's requests (plus a burst of 100):
// at 0.3, a dead new group after its switch has about 30 % of its
// requests rescued, and the rest fail and are seen.
func TestRescueBudget(t *testing.T) {
	r := newRig(t, 1)
	_, url := r.startRouter(router.Config{Proxy: proxy.Config{RescueRatio: 0.3}})
	r.register("hello-v001", "a", backend(t, "A", nil))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	r.register("hello-v002", "b", failing(t))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v002"})
	const n = 1000
	ok, failed, rescued := send(t, url, "GET", n, "hello-v001")
	t.Logf("budget 0.3: %d of %d rescued, %d failed", rescued, n, failed)
	if rescued > 0.3*n+100+5 || rescued < 0.3*n || ok != rescued || failed != n-rescued {
		t.Fatalf("%d rescued, %d ok, %d failed of %d; want 0.3 × %d + the burst of 100 at most, the rest failed", rescued, ok, failed, n, n)
	}
}

// A spec with traffic.retry_non_idempotent lets a POST that got a 5xx be
// rescued too.
func TestRescueNonIdempotentOptIn(t *testing.T) {
	r := newRig(t, 1)
	js, _ := jetstream.New(r.nc)
	kv, _ := js.KeyValue(r.ctx, topology.BucketServices)
	if _, err := spec.Apply(r.ctx, kv, spec.Service{Name: "hello", Owner: "t", Capacity: 1, Hostnames: []string{"hello.example.com"},
		Artifact: spec.Artifact{Command: []string{"x"}}, Traffic: spec.Traffic{RetryNonIdempotent: true}}); err != nil {
		t.Fatal(err)
	}
	_, url := r.startRouter(router.Config{})
	r.register("hello-v001", "a", backend(t, "A", nil))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	r.register("hello-v002", "b", failing(t))
	r.command(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v002"})
	if ok, failed, rescued := send(t, url, "POST", 100, "hello-v001"); ok != 100 || failed != 0 || rescued != 100 {
		t.Fatalf("POSTs with the opt-in: %d ok, %d failed, %d rescued", ok, failed, rescued)
	}
}

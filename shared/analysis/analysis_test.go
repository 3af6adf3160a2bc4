package analysis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/spec"
)

const orders = `
name: orders
owner: team-hello
metrics:
  - name: orders_per_request
    provider: prometheus
    address: http://127.0.0.1:9090
    kind: ratio
    events: sum(hello_orders_total{group="{{group}}"})
    total: sum(hello_requests_total{group="{{group}}"})
    direction: decrease
    tolerance: 0.05
  - name: queue
    provider: web
    address: http://127.0.0.1:8080/stats?group={{group}}
    kind: value
    query: $.queue.depth
    optional: true
`

func TestParse(t *testing.T) {
	tm, err := Parse(strings.NewReader(orders))
	if err != nil {
		t.Fatal(err)
	}
	if tm.Metrics[1].Direction != "increase" || tm.Metrics[1].Timeout.D() != DefaultTimeout || !tm.Metrics[1].Optional {
		t.Fatalf("defaults: %+v", tm.Metrics[1])
	}
	// every bad field is named
	bad := `
name: Orders
owner: team-hello
metrics:
  - name: a
    provider: graphite
    address: ftp://x
    kind: ratio
    events: x
  - name: a
    provider: web
    address: http://x/{{team}}
    kind: value
    query: "$[?"
    direction: sideways
    tolerance: -1
    timeout: 5m
`
	_, err = Parse(strings.NewReader(bad))
	var ve *spec.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a validation error, got %v", err)
	}
	got := map[string]bool{}
	for _, f := range ve.Fields {
		got[f.Field] = true
	}
	for _, f := range []string{"name", "metrics[0].provider", "metrics[0].address", "metrics[0].total", "metrics[1].name", "metrics[1].address",
		"metrics[1].query", "metrics[1].direction", "metrics[1].tolerance", "metrics[1].timeout"} {
		if !got[f] {
			t.Errorf("%s is not named: %v", f, ve)
		}
	}
	if _, err := Parse(strings.NewReader("name: x\nowner: t\nmetrics: []\nsurprise: 1\n")); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Errorf("an unknown field: %v", err)
	}
}

func TestRender(t *testing.T) {
	v := Vars{Service: "hello", Group: "hello-v002-canary", Version: "v2"}
	if got := Render(`sum(x{service="{{service}}",group="{{ group }}",version="{{version}}"})`, v, nil); got != `sum(x{service="hello",group="hello-v002-canary",version="v2"})` {
		t.Fatal(got)
	}
	if got := Render("http://h/s?g={{group}}&v={{version}}", Vars{Group: "a b", Version: "v&1"}, nil); got != "http://h/s?g=a b&v=v&1" {
		t.Fatal(got)
	}
}

// TestWebProvider reads numbers out of JSON answers, and never a number out
// of a provider that is down, slow, answers an error status, garbage,
// nothing or too much: each is an error, ErrNoData where it answered.
func TestWebProvider(t *testing.T) {
	slow := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/good":
			fmt.Fprintf(w, `{"queue": {"depth": 42.5}, "group": %q}`, r.URL.Query().Get("group"))
		case "/string":
			fmt.Fprint(w, `{"queue": {"depth": "deep"}}`)
		case "/two":
			fmt.Fprint(w, `{"queue": [{"depth": 1}, {"depth": 2}]}`)
		case "/garbage":
			fmt.Fprint(w, `<html>oops`)
		case "/nan":
			fmt.Fprint(w, `{"queue": {"depth": null}}`)
		case "/slow":
			<-slow
		case "/big":
			fmt.Fprintf(w, `{"queue": {"depth": 1}, "pad": %q}`, strings.Repeat("x", MaxAnswerBytes))
		default:
			http.Error(w, "no", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	defer close(slow) // before the server's close, which waits for the handler
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + l.Addr().String()
	l.Close()
	read := func(path, address string) (float64, error) {
		m := Metric{Provider: ProviderWeb, Address: address + path + "?group={{group}}", Timeout: spec.Duration(300 * time.Millisecond)}
		return Reader{}.Read(context.Background(), m, "$.queue.depth", Vars{Group: "hello-v002"})
	}
	if x, err := read("/good", srv.URL); err != nil || x != 42.5 {
		t.Fatalf("good: %v %v", x, err)
	}
	for _, c := range []struct {
		path, address string
		noData        bool
	}{
		{"/string", srv.URL, true}, {"/two", srv.URL, true}, {"/garbage", srv.URL, true}, {"/nan", srv.URL, true},
		{"/slow", srv.URL, false}, {"/big", srv.URL, false}, {"/status", srv.URL, false}, {"/good", down, false},
		{"/latest/meta-data", "http://169.254.169.254", false}, // refused before any packet is sent
	} {
		start := time.Now()
		x, err := read(c.path, c.address)
		if err == nil {
			t.Errorf("%s at %s: read %v", c.path, c.address, x)
			continue
		}
		if errors.Is(err, ErrNoData) != c.noData {
			t.Errorf("%s: %v (want no data: %v)", c.path, err, c.noData)
		}
		if time.Since(start) > 2*time.Second {
			t.Errorf("%s took %s: the timeout is 300ms", c.path, time.Since(start))
		}
		t.Logf("%s: %v", c.path, err)
	}
}

// TestPrometheusProviderGarbage: client_golang's API client against a
// server that is not Prometheus, or answers nothing useful: an error,
// never a number.
func TestPrometheusProviderGarbage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.FormValue("query") {
		case "empty":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
		case "two":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{"a":"b"},"value":[1,"2"]}]}}`)
		case "nan":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}`)
		default:
			fmt.Fprint(w, `not json at all`)
		}
	}))
	defer srv.Close()
	for _, q := range []string{"empty", "two", "nan", "garbage"} {
		m := Metric{Provider: ProviderPrometheus, Address: srv.URL, Timeout: spec.Duration(time.Second)}
		if x, err := (Reader{}).Read(context.Background(), m, q, Vars{}); err == nil {
			t.Errorf("%s: read %v", q, x)
		} else {
			t.Logf("%s: %v", q, err)
		}
	}
}

// TestEgressAllowList: with the admin's allow-list, a template's address
// outside it is refused before any connection is made (the server counts
// none), whatever name it is given; inside it, it is read. Bad entries are
// refused with the entry named.
func TestEgressAllowList(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, `{"v": 7}`)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	m := Metric{Provider: ProviderWeb, Timeout: spec.Duration(time.Second)}
	read := func(allow, address string) (float64, error) {
		e, err := ParseEgress(allow)
		if err != nil {
			t.Fatal(err)
		}
		m.Address = address
		return NewReader(e).Read(context.Background(), m, "$.v", Vars{})
	}
	for _, addr := range []string{"http://127.0.0.1:" + port, "http://localhost:" + port} {
		if _, err := read("10.0.0.0/8, 192.168.1.7", addr); err == nil || !strings.Contains(err.Error(), "not in the providers' egress allow-list (10.0.0.0/8,192.168.1.7/32)") {
			t.Fatalf("%s outside the allow-list: %v", addr, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the server outside the allow-list", n)
	}
	for _, allow := range []string{"127.0.0.0/8", "127.0.0.1", "", "::1,127.0.0.1/32"} {
		if x, err := read(allow, "http://127.0.0.1:"+port); err != nil || x != 7 {
			t.Fatalf("allow %q: %v %v", allow, x, err)
		}
	}
	// link-local stays refused even when allowed
	if _, err := read("169.254.0.0/16", "http://169.254.169.254"); err == nil || !strings.Contains(err.Error(), "link-local") {
		t.Fatalf("metadata address: %v", err)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "1.2.3"} {
		if _, err := ParseEgress(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseEgress(%q): %v", bad, err)
		}
	}
}

// TestOneEvaluationTimeAReading: the four queries of a ratio's reading are
// evaluated at one time, so that events and total come from the same
// scrape (CI saw a reading a second apart put 449 requests in a canary's
// total and no order in its events).
func TestOneEvaluationTimeAReading(t *testing.T) {
	var mu sync.Mutex
	var times []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, r.FormValue("time"))
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // the queries are apart in time
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"success","data":{"resultType":"scalar","result":[1,"5"]}}`)
	}))
	defer srv.Close()
	j := &Judge{Alpha: 0.01, MinSamples: 1}
	j.Add([]Template{{Name: "t", Metrics: []Metric{{Name: "m", Provider: ProviderPrometheus, Address: srv.URL, Kind: KindRatio,
		Events: "e", Total: "n", Timeout: spec.Duration(time.Second)}}}})
	rs := j.Read(context.Background(), Reader{}, Vars{Group: "b"}, Vars{Group: "c"})
	if rd := rs["t/m"]; rd.Err != nil || len(rd.Values) != 4 {
		t.Fatalf("reading: %+v", rd)
	}
	if len(times) != 4 || times[0] == "" || times[1] != times[0] || times[2] != times[0] || times[3] != times[0] {
		t.Fatalf("evaluation times %q: want one for the whole reading", times)
	}
}

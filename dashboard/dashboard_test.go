package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/testkit"
)

// TestActionRefusals: the buttons' endpoint refuses, with a clear error and
// before any NATS call, what is not a same-origin JSON action of a known
// verb on a valid service with creds.
func TestActionRefusals(t *testing.T) {
	s := New(Config{})
	h := s.Handler()
	for _, c := range []struct {
		name, body, ctype, origin string
		code                      int
		says                      string
	}{
		{"not JSON", `verb=rollback`, "application/x-www-form-urlencoded", "", http.StatusUnsupportedMediaType, "application/json"},
		{"cross-origin", `{"verb":"rollback","service":"hello","creds":"x"}`, "application/json", "http://evil.example", http.StatusForbidden, "cross-origin"},
		{"unknown field", `{"verb":"rollback","service":"hello","sudo":true}`, "application/json", "", http.StatusBadRequest, "unknown field"},
		{"unknown verb", `{"verb":"destroy","service":"hello","creds":"x"}`, "application/json", "", http.StatusBadRequest, "verb"},
		{"bad service", `{"verb":"rollback","service":"Hello/../x","creds":"x"}`, "application/json", "", http.StatusBadRequest, "service"},
		{"no creds", `{"verb":"rollback","service":"hello"}`, "application/json", "", http.StatusUnauthorized, "no creds"},
		{"not creds", `{"verb":"rollback","service":"hello","creds":"hello"}`, "application/json", "", http.StatusUnauthorized, "creds"},
		{"too big", `{"verb":"rollback","service":"hello","creds":"` + strings.Repeat("x", maxActionBytes) + `"}`, "application/json", "", http.StatusBadRequest, "too large"},
	} {
		req := httptest.NewRequest("POST", "http://127.0.0.1:8090/api/action", strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.ctype)
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, w.Code, w.Body.String(), c.code, c.says)
		}
	}
}

// TestModelIgnoresWhatDoesNotDecode: garbage on the streams changes nothing,
// and the state always marshals (what the page reads must be JSON).
func TestModelIgnoresWhatDoesNotDecode(t *testing.T) {
	m := newModel()
	m.event("release.hello.completed", []byte("{not json"))
	m.sample("metrics.hello.hello-v001", []byte(`{"service":"hello","group":"hello-v001","buckets_us":[1,2],"latency":[1]}`)) // counts do not match the bounds
	m.sample("metrics.hello.hello-v001", []byte("\x00"))
	st := m.snapshot(time.Now())
	if len(st.Events) != 0 || len(m.groups["hello/hello-v001"].recent) != 0 {
		t.Fatalf("garbage kept: %+v %+v", st.Events, m.groups)
	}
	ev, _ := events.New("chaos", events.ChaosTerminated, "hello", "", events.Chaos{Service: "hello", Group: "hello-v001", Instance: "hello-v001-1"})
	b, _ := ev.Encode()
	m.event("chaos.hello.terminated", b)
	s := metrics.Sample{Service: "hello", Group: "hello-v001", Start: time.Now().Add(-time.Second), End: time.Now(), Requests: 10, Status5xx: 1,
		BucketsMicros: []int64{100, 200, 400}, Latency: []uint64{0, 9, 0, 1}}
	m.sample("metrics.hello.hello-v001", s.Encode())
	if _, err := json.Marshal(m.snapshot(time.Now())); err != nil {
		t.Fatal(err)
	}
	if len(m.kills["hello"]) != 1 {
		t.Fatalf("kills %+v", m.kills)
	}
	f := m.groups["hello/hello-v001"].live()
	if f.Requests != 10 || f.Errors != 1 || f.P99Ms <= 0.2 {
		t.Fatalf("live figures %+v", f)
	}
}

// TestAuditPages: the audit view's answer is paged, newest first, a page
// of AuditPage events at a time, with the count of pages; a page past the
// last is empty, a page that is not a number is refused.
func TestAuditPages(t *testing.T) {
	srv := testkit.Start(t)
	nc := srv.Conn(t)
	ctx := testkit.Context(t, 30*time.Second)
	s := New(Config{NC: nc})
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	js := srv.JS(t)
	const n = 2*AuditPage + 20
	for i := range n {
		ev, err := events.New("test", events.ReleaseRequested, "hello", fmt.Sprintf("r-%03d", i), events.Requested{Version: fmt.Sprintf("v%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := natsx.Publish(ctx, js, events.ReleaseRequested.Subject("hello"), ev); err != nil {
			t.Fatal(err)
		}
	}
	h := s.Handler()
	get := func(query string) (int, AuditPageOf) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1:8090/api/audit?"+query, nil))
		var p AuditPageOf
		_ = json.Unmarshal(w.Body.Bytes(), &p)
		return w.Code, p
	}
	seen := map[string]bool{}
	for page, want := range map[int]int{1: AuditPage, 2: AuditPage, 3: 20, 4: 0} {
		code, p := get(fmt.Sprintf("service=hello&page=%d", page))
		if code != http.StatusOK || len(p.Events) != want || p.Total != n || p.Pages != 3 || p.Page != page {
			t.Fatalf("page %d: %d, %d events of %d, page %d of %d; want %d", page, code, len(p.Events), p.Total, p.Page, p.Pages, want)
		}
		for i, e := range p.Events {
			if seen[e.Release] {
				t.Fatalf("%s on two pages", e.Release)
			}
			seen[e.Release] = true
			// newest first: the first page starts with the last release
			if wantRel := fmt.Sprintf("r-%03d", n-1-(page-1)*AuditPage-i); e.Release != wantRel {
				t.Fatalf("page %d row %d: %s, want %s", page, i, e.Release, wantRel)
			}
		}
	}
	if code, _ := get("service=hello&page=0"); code != http.StatusBadRequest {
		t.Fatalf("page 0: %d", code)
	}
	if code, _ := get("service=hello&page=x"); code != http.StatusBadRequest {
		t.Fatalf("page x: %d", code)
	}
}

// TestSparkline: a service's traffic per step, every group together,
// each complete step's requests per second and error rate, the steps with
// no sample at 0; the step in progress is left out.
func TestSparkline(t *testing.T) {
	m := newModel()
	now := time.Unix(1_000_000, 0) // a step's start: steps are 10 s
	sample := func(group string, end time.Time, requests, errors uint64) {
		s := metrics.Sample{Service: "hello", Group: group, Start: end.Add(-time.Second), End: end, Requests: requests, Status5xx: errors,
			BucketsMicros: []int64{100, 200}, Latency: []uint64{requests, 0, 0}}
		m.sample("", s.Encode())
	}
	sample("hello-v001", now.Add(-5*time.Second), 300, 3) // the last complete step
	sample("hello-v002-canary", now.Add(-8*time.Second), 100, 1)
	sample("hello-v001", now.Add(-25*time.Second), 50, 0) // two steps back
	sample("hello-v001", now.Add(time.Second), 999, 0)    // the step in progress
	pts := m.sparkOf("hello", now)
	if len(pts) != sparkSteps {
		t.Fatalf("%d points", len(pts))
	}
	last, back1, back2 := pts[len(pts)-1], pts[len(pts)-2], pts[len(pts)-3]
	if last.Rate != 40 || last.ErrorRate != 0.01 || back1.Rate != 0 || back2.Rate != 5 || back2.ErrorRate != 0 {
		t.Fatalf("last %+v, one back %+v, two back %+v", last, back1, back2)
	}
}

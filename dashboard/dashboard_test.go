package dashboard

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
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

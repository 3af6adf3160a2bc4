package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/redblack/redblack/shared/prom"
	"github.com/redblack/redblack/shared/testkit"
)

// otlpReceiver is an OTLP/HTTP endpoint that keeps the names of the spans
// sent to it.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []string
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var ex coltrace.ExportTraceServiceRequest
	if err != nil || req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &ex) != nil {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rs := range ex.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				r.spans = append(r.spans, sp.GetName())
			}
		}
	}
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Write(b)
}

// names are the span names received so far.
func (r *otlpReceiver) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.spans...)
}

func (r *otlpReceiver) has(name string) bool { return slices.Contains(r.names(), name) }

// TestUpNodesIsOneProduct: what the one-process up does, up --nodes does
// (issue 29: team add answered "no responders", --admin, --ui and --otlp
// were refused): teams are issued, listed and revoked, the revocation
// reaching every node at once without a restart; the admin port serves
// every process's metrics, each labelled with its process, clean by
// promtool; the dashboard serves the state; each release is a trace.
func TestUpNodesIsOneProduct(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster and five service processes")
	}
	recv := &otlpReceiver{}
	otlp := httptest.NewServer(recv)
	defer otlp.Close()
	u := startUpNodes(t, "--otlp", otlp.URL)

	// a team, issued and listed; its user connects to every node
	creds := filepath.Join(t.TempDir(), "t.creds")
	if code, out, errs := u.cli("team", "add", "team-hello", "--services", "hello", "--user", "alice", "--out", creds); code != 0 || !strings.Contains(out, "team-hello/alice: creds written") {
		t.Fatalf("team add under --nodes: %d %s %s", code, out, errs)
	}
	if code, out, errs := u.cli("team", "ls"); code != 0 || !strings.Contains(out, "hello") || !strings.Contains(out, "alice") {
		t.Fatalf("team ls under --nodes: %d %s %s", code, out, errs)
	}
	nodes := strings.Split(u.urls, ",")
	var held []*nats.Conn
	for _, url := range nodes {
		// (the revocation's asynchronous error is expected, not printed)
		nc, err := nats.Connect(url, nats.UserCredentials(creds), nats.NoReconnect(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatalf("the team's user on %s: %v", url, err)
		}
		defer nc.Close()
		held = append(held, nc)
	}
	// the release is the team's: through the team API, as team-hello/alice
	if code, out, errs := run(t, u.urls, "--creds", creds, "release", "hello", "--version", "v1", "--artifact", u.hello+" --version v1", "--wait", "--timeout", "90s"); code != 0 ||
		!strings.Contains(out, "(by team-hello/alice)") || !strings.Contains(out, "completed") {
		t.Fatalf("a team's release under --nodes: %d\n%s\n%s\nup's log:\n%s", code, out, errs, u.logs.String())
	}

	// revoked: every node closes its connection and refuses a new one,
	// with no restart
	if code, out, errs := u.cli("team", "revoke", "team-hello"); code != 0 {
		t.Fatalf("team revoke under --nodes: %d %s %s", code, out, errs)
	}
	for i, nc := range held {
		for deadline := time.Now().Add(10 * time.Second); !nc.IsClosed(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("node %s kept the revoked user's connection", nodes[i])
			}
		}
		if nc, err := nats.Connect(nodes[i], nats.UserCredentials(creds), nats.NoReconnect()); err == nil {
			nc.Close()
			t.Fatalf("node %s let the revoked user connect again", nodes[i])
		}
	}

	// the admin port: every process's metrics, labelled by process
	metrics := u.fields["metrics"]
	if !strings.HasPrefix(metrics, "http://127.0.0.1:") {
		t.Fatalf("ready line: metrics=%q", metrics)
	}
	var fams prom.Families
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if fams, err = prom.Scrape(metrics); err != nil {
			t.Fatal(err)
		}
		if n, _ := fams.Value("redblack_releases_total", map[string]string{"outcome": "completed", "process": "watchdog"}); n == 1 || time.Now().After(deadline) {
			break
		}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"redblack_releases_total", map[string]string{"outcome": "completed", "process": "watchdog"}},
		{"redblack_router_requests_total", map[string]string{"service": "hello", "process": "router"}},
		{"go_goroutines", map[string]string{"process": "canary"}},
		{"redblack_provisioner_instances", map[string]string{"service": "hello", "process": "provisioner"}},
		{"process_cpu_seconds_total", map[string]string{"process": "chaos"}},
		{"go_goroutines", map[string]string{"process": "up"}},
	} {
		if _, ok := fams.Value(c.name, c.labels); !ok {
			t.Errorf("the admin port under --nodes lacks %s%v", c.name, c.labels)
		}
	}
	testkit.Promtool(t, metrics)

	// the dashboard's state has the service and its release
	resp, err := http.Get(strings.TrimSuffix(u.fields["ui"], "/") + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	var state map[string]any
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &state) != nil || !strings.Contains(string(body), `"hello-v001"`) {
		t.Fatalf("the dashboard under --nodes: %s %.300s", resp.Status, body)
	}

	// the release's trace, exported once it ended
	for deadline := time.Now().Add(20 * time.Second); !recv.has("release hello v1"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no trace of the release under --nodes; spans: %v", recv.names())
		}
	}
}

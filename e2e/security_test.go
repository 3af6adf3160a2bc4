package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/redblack/redblack/cli"
	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/services/canary/api"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/metrics"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/prom"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/subjects"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// TestHostileMessagesChangeNothing publishes, as the admin (who may write
// anything but samples), malformed events and commands of every kind,
// garbage in every bucket and garbage API calls, and garbage samples as
// the router's user. redblack up stays up, every service
// answers, and a release started afterwards completes.
func TestHostileMessagesChangeNothing(t *testing.T) {
	p := newPipeline(t, t.TempDir(), fastSpec())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	junk := [][]byte{
		[]byte("\x00\xff garbage"), []byte("{}"), []byte("null"), []byte("[]"), []byte(`"x"`),
		[]byte(`{"specversion":"1.0","type":"io.redblack.x","data":{"a":` + strings.Repeat("[", 5000) + `}}`),
		bytes.Repeat([]byte("x"), 512<<10),
	}
	kinds := events.Kinds()
	for _, k := range kinds {
		subject := k.Subject("hello")
		for _, b := range junk {
			if _, err := p.js.Publish(ctx, subject, b); err != nil {
				t.Fatalf("%s: %v", subject, err)
			}
		}
		// well-formed envelopes whose data has every field of the wrong type
		// or out of range, naming groups and releases that do not exist
		for _, data := range []any{
			map[string]any{"service": 5, "group": []int{1}, "capacity": -1e308, "weights": "x", "instance": map[string]int{}},
			map[string]any{"service": "hello", "group": "hello-v999", "capacity": 1 << 40, "weights": map[string]int{"hello-v999": 1 << 30}, "instance": "hello-v999-1"},
			map[string]any{"service": "hello", "group": "../../etc", "version": strings.Repeat("v", 10000), "artifact": map[string]any{"command": []string{"/bin/sh", "-c", "touch /tmp/pwned"}}},
		} {
			ev, err := events.New("hostile", k, "hello", "r-ghost-"+strconv.Itoa(len(k.Name)), data)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := natsx.Publish(ctx, p.js, subject, ev); err != nil {
				t.Fatalf("%s: %v", subject, err)
			}
		}
	}
	rcreds, err := p.m.Authority().Service("router")
	if err != nil {
		t.Fatal(err)
	}
	rnc, err := p.m.ConnectCreds("junk-router", rcreds) // samples: the admin may publish none
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"hello-v001", "hello-v999", "x"} {
		for _, b := range junk {
			rnc.Publish(subjects.Sample("hello", g, subjects.PublisherRouter, "junk"), b)
		}
	}
	for _, bucket := range []string{topology.BucketRoutes, topology.BucketInstances, topology.BucketServices, topology.BucketReleases, topology.BucketChaos} {
		kv, err := p.js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range junk[:6] {
			if _, err := kv.Put(ctx, fmt.Sprintf("ghost%d", i), b); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, verb := range []string{api.VerbRelease, api.VerbRollback, api.VerbAbort, api.VerbSpecApply, api.VerbSpecGet, "nosuch"} {
		for _, b := range junk {
			if _, err := p.nc.Request(subjects.API("admin", "admin", verb, "hello"), b, 5*time.Second); err != nil {
				t.Fatalf("API %s with junk: %v (it must answer with an error)", verb, err)
			}
		}
	}
	if err := p.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.m.Failed():
		t.Fatalf("a service stopped: %v", p.m.Err())
	default:
	}
	for _, name := range mesh.ServiceNames {
		if _, err := p.nc.Request(natsx.StatusSubject(name), nil, 5*time.Second); err != nil {
			t.Fatalf("%s does not answer after the junk: %v", name, err)
		}
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Fatal("a hostile artifact ran")
	}
	p.deployV1()
	v2 := p.release("v2")
	p.await(v2, 60*time.Second, events.ReleaseCompleted)
}

// TestTeamsAndPermissions, end to end on redblack up: a team's creds
// from `redblack team add` release their own service through the CLI with
// their identity in requested_by; every forbidden action fails with a
// permission error and changes nothing; a request for a command outside
// the spec is rejected with the reason; an instance's environment holds
// nothing of the provisioner's; revoking the team ends its access.
func TestTeamsAndPermissions(t *testing.T) {
	t.Setenv("REDBLACK_TEST_PROVISIONER_SECRET", "s3cr3t-of-the-provisioner")
	dir := t.TempDir()
	p := newPipeline(t, dir, spec.Service{})
	clirun := func(creds string, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := cli.Main(append([]string{"--server", p.m.URL(), "--creds", creds}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}
	admin := p.m.AdminCreds()
	work := t.TempDir()
	payments := filepath.Join(work, "payments.creds")
	if code, out := clirun(admin, "team", "add", "payments", "--services", "hello", "--user", "alice", "--out", payments); code != 0 || !strings.Contains(out, "payments/alice") {
		t.Fatalf("team add: %d %s", code, out)
	}
	if st, err := os.Stat(payments); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("creds file: %v", err)
	}
	billing := filepath.Join(work, "billing.creds")
	if code, out := clirun(admin, "team", "add", "billing", "--services", "world", "--out", billing); code != 0 {
		t.Fatalf("team add billing: %s", out)
	}
	if code, out := clirun(admin, "team", "add", "thieves", "--services", "hello", "--out", filepath.Join(work, "x")); code == 0 || !strings.Contains(out, "owned by team payments") {
		t.Fatalf("a second team for hello: %d %s", code, out)
	}
	if code, out := clirun(admin, "team", "ls"); code != 0 || !strings.Contains(out, "payments") || !strings.Contains(out, "alice") || !strings.Contains(out, "billing") {
		t.Fatalf("team ls: %s", out)
	}

	// the team applies its own spec through the API
	svc := fastSpec()
	svc.Owner = "payments"
	svc.Artifact.Env = map[string]string{"GREETING": "hi"}
	svc.Artifact.EnvSecrets = map[string]string{"DB_PASSWORD": "db"}
	if err := os.MkdirAll(filepath.Join(dir, "secrets", "hello"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "hello", "db"), []byte("pw-7f3a9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	specFile := filepath.Join(work, "hello.yaml")
	b, _ := yaml.Marshal(svc)
	os.WriteFile(specFile, b, 0o644)
	if code, out := clirun(payments, "service", "apply", "-f", specFile); code != 0 || !strings.Contains(out, "service hello created") {
		t.Fatalf("team applying its spec: %d %s", code, out)
	}
	// billing may not apply (or read) hello's spec
	if code, out := clirun(billing, "service", "get", "hello"); code == 0 {
		t.Fatalf("billing read hello's spec: %s", out)
	}
	other := svc
	other.Owner = "billing"
	b, _ = yaml.Marshal(other)
	os.WriteFile(specFile, b, 0o644)
	if code, out := clirun(billing, "service", "apply", "-f", specFile); code == 0 || !strings.Contains(strings.ToLower(out), "permission") {
		t.Fatalf("billing applying hello's spec: %d %s", code, out)
	}
	// a spec claiming another service's host name is refused
	world := spec.Service{Name: "world", Owner: "billing", Capacity: 1, Hostnames: []string{"hello.localhost"}, Artifact: spec.Artifact{Command: []string{hello}}}
	b, _ = yaml.Marshal(world)
	os.WriteFile(specFile, b, 0o644)
	if code, out := clirun(billing, "service", "apply", "-f", specFile); code == 0 || !strings.Contains(out, "claimed by another service hello") {
		t.Fatalf("world claiming hello's host name: %d %s", code, out)
	}

	// the team releases: requested_by is its identity, whatever it says
	code, out := clirun(payments, "release", "hello", "--version", "v1", "--wait", "--timeout", "60s")
	if code != 0 || !strings.Contains(out, "by payments/alice") {
		t.Fatalf("team release: %d %s", code, out)
	}
	var requested events.Requested
	p.mu.Lock()
	for _, ev := range p.events {
		if ev.Type == events.ReleaseRequested.Type() {
			ev.DecodeData(&requested)
		}
	}
	p.mu.Unlock()
	if requested.RequestedBy != "payments/alice" {
		t.Fatalf("requested_by %q, want payments/alice", requested.RequestedBy)
	}
	// the instance's environment: the spec's and redblack's, nothing of the
	// provisioner's own
	env := instanceEnviron(t, p, "hello-v001")
	if env["GREETING"] != "hi" || env["DB_PASSWORD"] != "pw-7f3a9" || env["REDBLACK_SERVICE"] != "hello" || env["PORT"] == "" {
		t.Fatalf("instance environment lacks its own variables: %v", env)
	}
	for k := range env {
		if !strings.HasPrefix(k, "REDBLACK_") && k != "PATH" && k != "HOME" && k != "PORT" && k != "GREETING" && k != "DB_PASSWORD" {
			t.Errorf("instance environment has %s, not the spec's", k)
		}
	}
	if _, ok := env["REDBLACK_TEST_PROVISIONER_SECRET"]; ok {
		t.Fatal("the provisioner's secret reached an instance")
	}

	// the secret's value is nowhere in the audit log; its name is
	if code, out := clirun(admin, "events", "--service", "hello", "--json"); code != 0 || strings.Contains(out, "pw-7f3a9") || !strings.Contains(out, "DB_PASSWORD") {
		t.Fatalf("audit log and the secret: %d %s", code, out)
	}
	// the team reads its own service's events
	if code, out := clirun(payments, "events", "--service", "hello"); code != 0 || !strings.Contains(out, "completed") {
		t.Fatalf("team events: %d %s", code, out)
	}
	if code, out := clirun(billing, "events", "--service", "hello"); code == 0 && strings.Contains(out, "completed") {
		t.Fatalf("billing read hello's events: %s", out)
	}

	// a command outside the spec is rejected with the reason
	code, out = clirun(payments, "release", "hello", "--version", "v2", "--artifact", "/bin/sh -c id", "--wait", "--timeout", "30s")
	if code != 1 || !strings.Contains(out, "not a program this service may run") {
		t.Fatalf("release of /bin/sh: %d %s", code, out)
	}

	// forbidden, as raw NATS with the team's creds: each fails with a
	// permission error and changes nothing
	creds, _ := os.ReadFile(payments)
	emu := make(chan string, 100)
	tnc, err := p.m.ConnectCreds("alice", creds, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { emu <- err.Error() }))
	if err != nil {
		t.Fatal(err)
	}
	before := streamCounts(t, p.js)
	groups := p.groups()
	rt := p.route()
	for _, subj := range []string{
		events.ServerGroupCreate.Subject("hello"), events.InstanceTerminate.Subject("hello"),
		events.TrafficSet.Subject("hello"), events.TrafficSwitch.Subject("hello"),
		"$KV.instances.hello.hello-v001.hello-v001-9", subjects.Sample("hello", "hello-v001", subjects.PublisherRouter, "r"),
		events.ReleaseRequested.Subject("hello"), subjects.API("billing", "billing", "release", "world"),
	} {
		tnc.Publish(subj, []byte(`{"service":"hello","group":"hello-v001","capacity":1,"artifact":{"command":["/bin/sh","-c","touch /tmp/pwned"]},"weights":{"hello-v999":1000}}`))
		tnc.Flush()
		select {
		case e := <-emu:
			if !strings.Contains(e, "Permissions Violation") || !strings.Contains(e, subj) {
				t.Errorf("publish %s: %s", subj, e)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("publish %s: no permission error", subj)
		}
	}
	after := streamCounts(t, p.js)
	for name, n := range after {
		// METRICS takes samples, and the releases bucket lease renewals
		// (the fleet observer's, every second), whatever the team does
		if name != topology.StreamMetrics && name != "KV_"+topology.BucketReleases && n != before[name] {
			t.Errorf("stream %s: %d messages, %d before the forbidden publishes", name, n, before[name])
		}
	}
	if g := p.groups(); strings.Join(g, ",") != strings.Join(groups, ",") {
		t.Errorf("groups %v, %v before", g, groups)
	}
	if r := p.route(); r.Active != rt.Active || len(r.Weights) != len(rt.Weights) {
		t.Errorf("route %+v, %+v before", r, rt)
	}

	// revoke: the team's creds stop working
	if code, out := clirun(admin, "team", "revoke", "payments"); code != 0 || !strings.Contains(out, "1 user") {
		t.Fatalf("revoke: %d %s", code, out)
	}
	if code, out := clirun(payments, "rollback", "hello"); code == 0 || !strings.Contains(strings.ToLower(out), "authorization") {
		t.Fatalf("a revoked team's rollback: %d %s", code, out)
	}
	// anonymous: refused
	if nc, err := nats.Connect(p.m.URL()); err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted")
	}
	// the admin still can
	if code, out := clirun(admin, "status", "hello"); code != 0 {
		t.Fatalf("admin status: %s", out)
	}
}

// instanceEnviron reads /proc/<pid>/environ of the first instance of group.
func instanceEnviron(t *testing.T, p *pipeline, group string) map[string]string {
	t.Helper()
	resp, err := p.nc.Request("redblack.provisioner.list", nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var groups []fleet.Group
	if err := json.Unmarshal(resp.Data, &groups); err != nil {
		t.Fatalf("provisioner list: %v: %s", err, resp.Data)
	}
	for _, g := range groups {
		if g.Spec.Group == group && len(g.Instances) > 0 && g.Instances[0].PID > 0 {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", g.Instances[0].PID))
			if err != nil {
				t.Fatal(err)
			}
			env := map[string]string{}
			for _, kv := range bytes.Split(b, []byte{0}) {
				if k, v, ok := strings.Cut(string(kv), "="); ok {
					env[k] = v
				}
			}
			return env
		}
	}
	t.Fatalf("no instance of %s with a pid in %s", group, resp.Data)
	return nil
}

func streamCounts(t *testing.T, js jetstream.JetStream) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[string]uint64{}
	for name := range js.StreamNames(ctx).Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = st.CachedInfo().State.Msgs
	}
	return out
}

// TestServiceProcessWithItsOwnCreds runs the chaos service's own binary as
// a second copy beside `up`, with the creds `up` wrote for it: it connects
// as the chaos user and registers. Without creds it is refused.
func TestServiceProcessWithItsOwnCreds(t *testing.T) {
	dir := t.TempDir()
	m := start(t, dir)
	bin := filepath.Join(t.TempDir(), "chaos")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/redblack/redblack/services/chaos/cmd/chaos").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	refused, cancel := context.WithTimeout(context.Background(), 30*time.Second) // killed if it hangs
	defer cancel()
	if out, err := exec.CommandContext(refused, bin, "--server", m.URL()).CombinedOutput(); err == nil || !strings.Contains(strings.ToLower(string(out)), "authorization") {
		t.Fatalf("chaos without creds: %v %s", err, out)
	}
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := free.Addr().String()
	free.Close()
	var logs testkit.SyncBuffer
	proc := testkit.StartProcess(t, &logs, bin, "--server", m.URL(), "--creds", filepath.Join(dir, "creds", "chaos.creds"), "--log-level", "warn", "--metrics", metricsAddr)
	nc, err := m.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	awaitCopies(t, nc, "redblack-chaos", 2, proc, &logs)
	// the service's own process serves its metrics, parsed by the library
	fams, err := prom.Scrape("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics of the chaos process: %v", err)
	}
	for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := fams.Value(name, nil); !ok {
			t.Errorf("the chaos process's /metrics lacks %s", name)
		}
	}
}

// TestNATSOffLoopbackNeedsTLS: up refuses a NATS listener off loopback
// without TLS; with a certificate, clients connect over TLS (and still need
// creds).
func TestNATSOffLoopbackNeedsTLS(t *testing.T) {
	cfg := testConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = t.TempDir(), "0.0.0.0:0", "127.0.0.1:0"
	if m, err := mesh.Start(context.Background(), cfg); err == nil {
		m.Stop()
		t.Fatal("up served NATS on 0.0.0.0 without TLS")
	} else if !strings.Contains(err.Error(), "without TLS") {
		t.Fatalf("refusal: %v", err)
	}
	cert, key := testkit.SelfSigned(t)
	pool := cert
	cfg.NATSListen, cfg.TLSCert, cfg.TLSKey = "127.0.0.1:0", cert, key
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop() })
	url := strings.Replace(m.URL(), "nats://", "tls://", 1)
	nc, err := nats.Connect(url, nats.RootCAs(pool), nats.UserCredentials(m.AdminCreds()))
	if err != nil {
		t.Fatalf("TLS with creds: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect(url, nats.RootCAs(pool)); err == nil {
		nc.Close()
		t.Fatal("TLS without creds was accepted")
	}
	if nc, err := nats.Connect(m.URL(), nats.UserCredentials(m.AdminCreds()), nats.Timeout(2*time.Second)); err == nil && !nc.TLSRequired() {
		nc.Close()
		t.Fatal("a plain-text client was served")
	}
}

// forger publishes the forged samples: every 100 ms, for each of
// its groups, 1,000 requests all answered 200 fast, with the router's real
// id in the body, in windows that follow each other and end as far ahead
// as a sample may (overlapping the router's own).
// A team's instance (the discovery client's user of a service that calls
// hello) publishes them as itself and as the router, the admin as the
// router.
type forger struct {
	inst, admin  *nats.Conn
	router       string
	own, refused atomic.Int64 // published as itself; refused by the server
}

func newForger(t *testing.T, p *pipeline, router string) *forger {
	f := &forger{router: router}
	onErr := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if strings.Contains(err.Error(), "Permissions Violation") {
			f.refused.Add(1)
		}
	})
	icreds, err := p.m.Authority().Caller("evil", []string{"hello"})
	if err != nil {
		t.Fatal(err)
	}
	acreds, err := p.m.Authority().Admin("forger")
	if err != nil {
		t.Fatal(err)
	}
	if f.inst, err = p.m.ConnectCreds("evil", icreds, onErr); err != nil {
		t.Fatal(err)
	}
	if f.admin, err = p.m.ConnectCreds("forger", acreds, onErr); err != nil {
		t.Fatal(err)
	}
	return f
}

// start forges samples of groups until the returned stop is called.
func (f *forger) start(groups ...string) (stop func()) {
	gen := metrics.Synthetic{MedianMs: 1, Sigma: 0.2}.Generator()
	r := rand.New(rand.NewPCG(7, 7))
	quit, done := make(chan struct{}), make(chan struct{})
	last := map[string]time.Time{}
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			now := time.Now().UTC()
			for _, g := range groups {
				// each window starts where its last ended and ends as far
				// ahead as a sample may: every window of the router's
				// until then overlaps one already counted
				from, ok := last[g]
				if !ok {
					from = now.Add(-time.Second)
				}
				last[g] = now.Add(metrics.ClockSkew - time.Second)
				s := gen.Sample(r, 1000, "hello", g, from, last[g])
				s.Router = f.router
				b := s.Encode()
				if f.inst.Publish(subjects.Sample("hello", g, subjects.CallerPublisher("evil"), f.router), b) == nil {
					f.own.Add(1)
				}
				f.inst.Publish(subjects.Sample("hello", g, subjects.PublisherRouter, f.router), b)
				f.admin.Publish(subjects.Sample("hello", g, subjects.PublisherRouter, f.router), b)
			}
			f.inst.Flush()
			f.admin.Flush()
		}
	}()
	return func() { close(quit); <-done }
}

// TestForgedSamplesDecideNothing is the attack on the judge,
// forged as a team's instance and as the admin: a release answering half
// its requests with 500 still fails its canary, and a healthy one still
// completes. The instance's and the admin's samples posing as the router
// are refused by the server (permission violations); the instance's own
// samples naming the router are dropped and counted in dropped_samples.
// Before samples were bound to their sender, the forged windows made the
// judge discard the router's own, and the bad release completed.
func TestForgedSamplesDecideNothing(t *testing.T) {
	svc := fastSpec()
	svc.Strategy.Canary.Duration = spec.Duration(4 * time.Second)
	svc.Strategy.Bake.Duration = spec.Duration(4 * time.Second)
	p := newPipeline(t, t.TempDir(), svc)
	p.deployV1()
	f := newForger(t, p, p.routerID("hello-v001"))

	// the groups' names are known before they exist: forging starts first
	stop := f.start("hello-v002-canary", "hello-v002-baseline")
	bad := p.release("v2", "--error-rate", "0.5")
	ok, res := p.canaryResult(bad)
	stop()
	if ok || !strings.Contains(res.Reason, "error_rate High") {
		t.Fatalf("a canary with 50%% errors under forged samples: passed %v: %s", ok, res.Reason)
	}
	if res.DroppedSamples == 0 {
		t.Fatalf("the forged samples were not dropped: %d dropped of %d forged", res.DroppedSamples, f.own.Load())
	}
	p.await(bad, 30*time.Second, events.RolledBack)

	stop = f.start("hello-v003-canary", "hello-v003-baseline", "hello-v003", "hello-v001")
	good := p.release("v3")
	ok, res = p.canaryResult(good)
	if !ok || res.DroppedSamples < 10 {
		stop()
		t.Fatalf("a healthy canary under forged samples: passed %v, %d dropped: %s", ok, res.DroppedSamples, res.Reason)
	}
	p.await(good, 60*time.Second, events.ReleaseCompleted)
	stop()
	if n := f.refused.Load(); n < 20 {
		t.Fatalf("only %d samples posing as the router were refused by the server", n)
	}
	t.Logf("forged %d samples as the instance itself (dropped), %d refused posing as the router", f.own.Load(), f.refused.Load())
}

// TestTeamConsumersDeliverOnlyToTheirOwnInbox: a team creates no consumer
// itself (the server cannot check a push consumer's deliver subject); the
// team API makes them: a pull consumer of its service's events it reads,
// and a push consumer only under its own inbox prefix. One that would
// deliver to another team's inbox or to the JetStream API, or read
// another service's events, is refused with the reason, and no such
// consumer exists afterwards.
func TestTeamConsumersDeliverOnlyToTheirOwnInbox(t *testing.T) {
	svc := fastSpec()
	svc.Owner = "payments"
	p := newPipeline(t, t.TempDir(), svc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev, _ := events.New("test", events.ReleaseAccepted, "hello", "r1", events.Accepted{Service: "hello", Version: "v1", Group: "hello-v001"})
	if _, err := natsx.Publish(ctx, p.js, events.ReleaseAccepted.Subject("hello"), ev); err != nil {
		t.Fatal(err)
	}
	alice := auth.Identity{Team: "payments", User: "alice"}
	nc := p.teamUser(alice.Team, alice.User, "hello")
	p.teamUser("billing", "bob", "world")
	tjs, _ := jetstream.New(nc)
	octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := tjs.OrderedConsumer(octx, topology.StreamReleases, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subjects.AllReleases("hello")}})
	ocancel()
	if err == nil {
		t.Fatal("a team created a consumer itself")
	}
	releases := api.ConsumerRequest{Stream: topology.StreamReleases, Filter: subjects.AllReleases("hello")}

	var pull api.Consumer
	if err := api.Call(nc, alice, api.VerbConsumer, "hello", releases, &pull); err != nil {
		t.Fatalf("a pull consumer of its own events: %v", err)
	}
	cons, err := tjs.Consumer(ctx, topology.StreamReleases, pull.Name)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || m.Subject() != events.ReleaseAccepted.Subject("hello") {
		t.Fatalf("pulling its own events: %v", err)
	}

	feed, err := nc.SubscribeSync(alice.InboxPrefix() + ".feed")
	if err != nil {
		t.Fatal(err)
	}
	push := releases
	push.DeliverSubject = alice.InboxPrefix() + ".feed"
	var own api.Consumer
	if err := api.Call(nc, alice, api.VerbConsumer, "hello", push, &own); err != nil {
		t.Fatalf("a push consumer to its own inbox: %v", err)
	}
	if m, err := feed.NextMsg(5 * time.Second); err != nil || !strings.Contains(string(m.Data), `"hello-v001"`) {
		t.Fatalf("the push consumer delivered nothing to its own inbox: %v", err)
	}

	for deliver, want := range map[string]string{
		"_INBOX.billing.bob.x":                             "deliver_subject",
		"$JS.API.STREAM.DELETE." + topology.StreamReleases: "deliver_subject",
		alice.InboxPrefix():                                "deliver_subject", // the prefix itself, no token under it
		alice.InboxPrefix() + "x.y":                        "deliver_subject", // _INBOX.payments.alicex: another user's
		alice.InboxPrefix() + ".*":                         "deliver_subject",
	} {
		bad := releases
		bad.DeliverSubject = deliver
		if err := api.Call(nc, alice, api.VerbConsumer, "hello", bad, &api.Consumer{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("push to %s: %v, want refused on %s", deliver, err, want)
		}
	}
	for _, bad := range []api.ConsumerRequest{
		{Stream: topology.StreamReleases, Filter: subjects.AllReleases("world")},
		{Stream: topology.StreamReleases, Filter: "release.>"},
		{Stream: topology.StreamFleet, Filter: subjects.AllReleases("hello")},
		{Stream: topology.StreamMetrics, Filter: "metrics.hello.>"},
	} {
		if err := api.Call(nc, alice, api.VerbConsumer, "hello", bad, &api.Consumer{}); err == nil {
			t.Errorf("%+v: made", bad)
		}
	}
	if err := api.Call(nc, alice, api.VerbConsumer, "world", api.ConsumerRequest{Stream: topology.StreamReleases, Filter: subjects.AllReleases("world")}, &api.Consumer{}); err == nil {
		t.Error("a consumer of another team's service was made")
	}
	// every push consumer on the streams delivers under alice's inbox
	for _, stream := range []string{topology.StreamReleases, topology.StreamFleet} {
		st, err := p.js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		for info := range st.ListConsumers(ctx).Info() {
			raw, _ := json.Marshal(info.Config)
			var c struct {
				Deliver string `json:"deliver_subject"`
			}
			_ = json.Unmarshal(raw, &c)
			if c.Deliver != "" && !strings.HasPrefix(c.Deliver, alice.InboxPrefix()+".") {
				t.Errorf("consumer %s/%s delivers to %s", stream, info.Name, c.Deliver)
			}
		}
	}
}

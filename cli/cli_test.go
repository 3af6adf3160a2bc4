package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/redblack/redblack/shared/procfs"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/testkit/moto"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/svcmain"
)

// run runs the command line in-process against url.
func run(t *testing.T, url string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"--server", url}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func startMesh(t *testing.T) string {
	t.Helper()
	cfg := mesh.DefaultConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop() })
	t.Setenv("REDBLACK_CREDS", m.AdminCreds())
	return m.URL()
}

func writeFile(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const helloSpec = "name: hello\nowner: team-hello\ncapacity: 3\nartifact:\n  command: [hello]\n"

func TestServiceApplyGetList(t *testing.T) {
	url := startMesh(t)
	f := writeFile(t, helloSpec)
	for _, want := range []string{"service hello created", "service hello unchanged"} {
		if code, out, errs := run(t, url, "service", "apply", "-f", f); code != 0 || strings.TrimSpace(out) != want {
			t.Fatalf("apply = %d %q %q; want %q", code, out, errs, want)
		}
	}
	f2 := writeFile(t, strings.Replace(helloSpec, "capacity: 3", "capacity: 4", 1))
	if _, out, _ := run(t, url, "service", "apply", "-f", f2); strings.TrimSpace(out) != "service hello updated" {
		t.Fatalf("apply changed = %q", out)
	}
	bad := writeFile(t, "name: Hello\ncapacity: 0\n")
	code, _, errs := run(t, url, "service", "apply", "-f", bad)
	if code != 1 || !strings.Contains(errs, "name:") || !strings.Contains(errs, "capacity:") || !strings.Contains(errs, "nothing stored") {
		t.Fatalf("bad apply = %d %q", code, errs)
	}
	if _, out, _ := run(t, url, "service", "get", "hello"); !strings.Contains(out, "capacity: 4") {
		t.Fatalf("get = %q", out)
	}
	if code, _, errs := run(t, url, "service", "get", "nope"); code == 0 || !strings.Contains(errs, "no such service") {
		t.Fatalf("get missing = %d %q", code, errs)
	}
	if _, out, _ := run(t, url, "service", "list"); !strings.Contains(out, "hello  team-hello  local     4") {
		t.Fatalf("list = %q", out)
	}
}

// neverUp is a spec whose instances never pass a health check: its
// releases stay in phase launching (the launch deadline is 10 min).
const neverUp = "name: hello\nowner: team-hello\ncapacity: 1\nartifact:\n  command: [sleep, \"60\"]\n"

func TestReleaseWaitEventsStatusRollback(t *testing.T) {
	url := startMesh(t)
	run(t, url, "service", "apply", "-f", writeFile(t, neverUp))
	code, out, _ := run(t, url, "release", "hello", "--version", "v1")
	if code != 0 || !strings.HasPrefix(out, "release ") || !strings.Contains(out, "release.accepted") {
		t.Fatalf("release = %d %q", code, out)
	}
	first := strings.Fields(out)[1]

	// a second release while the first is in flight: --wait shows the
	// rejection and exits 1
	code, out, errs := run(t, url, "release", "hello", "--version", "v2", "--wait", "--timeout", "10s")
	if code != 1 || !strings.Contains(out, "release.rejected") || !strings.Contains(out, first) || !strings.Contains(errs, "rejected") {
		t.Fatalf("release --wait = %d %q %q", code, out, errs)
	}
	// --wait on a release that cannot finish within --timeout: exit 2
	run(t, url, "service", "apply", "-f", writeFile(t, strings.Replace(neverUp, "hello", "other", 1)))
	code, out, _ = run(t, url, "release", "other", "--version", "v1", "--wait", "--timeout", "1s")
	if code != 2 || !strings.Contains(out, "release.accepted") {
		t.Fatalf("release --wait timeout = %d %q", code, out)
	}
	// without --wait, a rejection exits 1 with its reason (issue 29: it
	// exited 0, the rejection only in events)
	code, out, errs = run(t, url, "release", "other", "--version", "v2")
	if code != 1 || !strings.Contains(out, "release.rejected") || !strings.Contains(out, "in progress") || !strings.Contains(errs, "rejected") {
		t.Fatalf("a rejected release without --wait = %d %q %q", code, out, errs)
	}

	_, out, _ = run(t, url, "events", "--service", "hello")
	// requested ×2, accepted, canary.passed, rejected; then fleet events
	if n := strings.Count(out, "  release."); n != 5 || !strings.Contains(out, "release.canary.passed") || !strings.Contains(out, "fleet.servergroup.created") {
		t.Fatalf("events table (%d release events):\n%s", n, out)
	}
	_, out, _ = run(t, url, "events", "--release", first, "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 { // requested, accepted, canary.passed (skipped: first release)
		t.Fatalf("events --release --json: %q", out)
	}
	for _, l := range lines {
		ev, err := events.Decode([]byte(l))
		if err != nil || ev.ReleaseID != first {
			t.Fatalf("line %q: %v", l, err)
		}
	}
	if _, out, _ = run(t, url, "events", "--service", "hello", "--since", "1ns"); strings.Contains(out, "release.") {
		t.Fatalf("--since 1ns showed old events: %q", out)
	}
	// a misspelt service is an error, not an empty table (issue 29)
	if code, out, errs := run(t, url, "events", "--service", "helo"); code == 0 || !strings.Contains(errs, `no service "helo"`) {
		t.Fatalf("events of an unknown service: %d %q %q", code, out, errs)
	}

	// status --json is the documented schema: snake_case keys only, no
	// internal evidence (issue 29: 800 lines of checkpoint histograms, with
	// Bounds beside snake_case); --debug keeps the records whole
	_, out, _ = run(t, url, "status", "--json")
	var doc statusDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Schema != StatusSchema || len(doc.Services) != 2 {
		t.Fatalf("status json %q: %v", out, err)
	}
	if st := doc.Services[0]; st.Service != "hello" || st.InFlight != first || st.LastRelease.Group != "hello-v001" || st.LastRelease.Phase != "launching" ||
		len(st.LastRelease.Phases) != 2 || st.LastRelease.Phases[0].Phase != "accepted" || st.LastRelease.Final {
		t.Fatalf("status %+v %+v", st, st.LastRelease)
	}
	checkSnakeCase(t, out)
	if n := strings.Count(out, "\n"); n > 150 {
		t.Errorf("status --json of two services is %d lines", n)
	}
	if _, out, _ = run(t, url, "status", "--debug"); !strings.Contains(out, `"artifact"`) {
		t.Errorf("status --debug lacks the raw record: %q", out)
	}
	if _, out, _ = run(t, url, "status", "hello"); !strings.Contains(out, first) || !strings.Contains(out, "phases:   accepted ") || !strings.Contains(out, " · launching ") || !strings.Contains(out, "so far") {
		t.Fatalf("status table %q", out)
	}

	// a rollback by hand of the release in flight; --wait exits 0 on rolled_back
	code, out, errs = run(t, url, "rollback", "hello", "--reason", "stuck", "--wait", "--timeout", "20s")
	if code != 0 || !strings.Contains(out, "release.rolled_back") || !strings.Contains(out, "stuck (by admin/admin)") {
		t.Fatalf("rollback --wait = %d %q %q", code, out, errs)
	}
	// the reason printed once, on its own line (issue 29: "rolled_back
	// (stuck (by admin/admin))" above it as well)
	if _, out, _ = run(t, url, "status", "hello"); !strings.Contains(out, "): rolled_back\n") || strings.Count(out, "stuck") != 1 ||
		!strings.Contains(out, "reason:   stuck (by admin/admin)\n") {
		t.Fatalf("status after the rollback %q", out)
	}
	// its path through the state machine, step by step, with whose step it was
	code, out, errs = run(t, url, "status", "--explain", first)
	if code != 0 || !strings.Contains(out, "accepted  (intake: the request took the lock)") ||
		!strings.Contains(out, "rolling_back  ← launching on io.redblack.release.rollback.requested (router's step)") ||
		!strings.Contains(out, "rolled_back  ← rolling_back on io.redblack.release.traffic.restored (provisioner's step)") {
		t.Fatalf("status --explain = %d %q %q", code, out, errs)
	}
	if code, _, errs = run(t, url, "status", "--explain", "no such/id"); code != 1 || !strings.Contains(errs, "invalid release id") {
		t.Fatalf("status --explain of a bad id = %d %q", code, errs)
	}
	// nothing left to roll back
	if code, _, errs = run(t, url, "rollback", "hello"); code != 1 || !strings.Contains(errs, "nothing to roll back") {
		t.Fatalf("second rollback = %d %q", code, errs)
	}
}

func TestEventsFollow(t *testing.T) {
	url := startMesh(t)
	run(t, url, "service", "apply", "-f", writeFile(t, helloSpec))
	var out testkit.SyncBuffer
	done := make(chan int)
	// follow in the background; with no --since it prints history too, so
	// the release is shown whichever starts first
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		done <- Main([]string{"--server", url, "events", "--follow", "--service", "hello"}, &out, &bytes.Buffer{})
	}()
	if code, _, errs := run(t, url, "release", "hello", "--version", "v1"); code != 0 {
		t.Fatal(errs)
	}
	for !strings.Contains(out.String(), "release.accepted") {
		select {
		case <-ctx.Done():
			t.Fatalf("follow printed %q", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGINT) // events --follow ends on SIGINT
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("follow exited %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not stop on SIGINT")
	}
}

func TestCommandErrors(t *testing.T) {
	code, _, errs := run(t, "nats://127.0.0.1:1", "status")
	if code != 1 || !strings.Contains(errs, "redblack up") {
		t.Fatalf("no server: %d %q", code, errs)
	}
	if code, _, errs = run(t, "nats://127.0.0.1:1", "release", "Bad_Name", "--version", "v1"); code != 1 || !strings.Contains(errs, "invalid service name") {
		t.Fatalf("bad name: %d %q", code, errs)
	}
	if code, _, errs = run(t, "nats://127.0.0.1:1", "release", "hello"); code != 1 || !strings.Contains(errs, "version") {
		t.Fatalf("no version: %d %q", code, errs)
	}
	for _, c := range []string{"up", "demo", "service", "release", "rollback", "chaos", "events", "status", "bench"} {
		if code, out, _ := run(t, "x", c, "--help"); code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%s --help = %d", c, code)
		}
	}
}

func TestParseArtifact(t *testing.T) {
	a, err := parseArtifact("./hello --version v2")
	if err != nil || len(a.Command) != 3 {
		t.Fatalf("%+v %v", a, err)
	}
	if a, _ = parseArtifact("ami-123"); a.AMI != "ami-123" {
		t.Fatalf("%+v", a)
	}
	if a, _ = parseArtifact(`{"command":["a b"]}`); a.Command[0] != "a b" {
		t.Fatalf("%+v", a)
	}
	if _, err = parseArtifact(`{"commnd":["x"]}`); err == nil {
		t.Fatal("unknown JSON field accepted")
	}
}

// startUp runs `redblack up` from bin on data as a real process with NATS
// on natsAddr, waits for its ready line and returns its NATS URL; the
// process is killed at the test's end if it still runs.
func startUp(t *testing.T, bin, data, natsAddr string, inherit ...*os.File) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(bin, "up", "--data", data, "--nats", natsAddr, "--http", "127.0.0.1:0", "--admin", "", "--ui", "", "--log-level", "warn", "--bake-latency-slack", testkit.LatencySlack.String())
	cmd.ExtraFiles = inherit // as a shell leaves them: open, and not close-on-exec
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, "redblack ready nats=nats://127.0.0.1:") || !strings.Contains(l, " creds="+filepath.Join(data, "creds", "admin.creds")+" ") {
			t.Fatalf("first line %q", l)
		}
		go func() {
			for range lines {
			}
		}()
		return strings.TrimPrefix(strings.Fields(l)[2], "nats="), cmd
	case <-time.After(20 * time.Second):
		t.Fatal("no ready line")
	}
	return "", nil
}

// TestUpPassesNoInheritedFD: `up` started holding a descriptor its parent
// left open (here a file, as a shell's lock would be) passes it to no
// child: neither its data plane nor an instance holds it (issue 28: a data
// plane kept a shell's lock for 35 minutes after its up was gone).
func TestUpPassesNoInheritedFD(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "redblack")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/redblack").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Cleanup(func() { testkit.KillAll(bin) })
	hello, err := testkit.BuildHello(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testkit.KillAll(hello) })
	held, err := os.Create(filepath.Join(t.TempDir(), "held-by-the-shell"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	data := t.TempDir()
	t.Setenv("REDBLACK_DATA", data)
	url, up := startUp(t, bin, data, "127.0.0.1:0", held)
	holds := func(pid int) bool {
		fds, err := procfs.FDTargets(pid)
		if err != nil {
			return false // gone
		}
		for _, target := range fds {
			if target == held.Name() {
				return true
			}
		}
		return false
	}
	if !holds(up.Process.Pid) {
		t.Fatal("up does not hold the descriptor it was started with: the test proves nothing")
	}
	run(t, url, "service", "apply", "-f", writeFile(t, strings.Replace(helloSpec, "[hello]", "["+hello+"]", 1)))
	if code, out, errs := run(t, url, "release", "hello", "--version", "v1"); code != 0 {
		t.Fatalf("release: %q %q", out, errs)
	}
	for deadline := time.Now().Add(30 * time.Second); len(testkit.Pids(hello)) < 3; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d hello instances, want 3", len(testkit.Pids(hello)))
		}
	}
	children := 0
	for _, pid := range append(testkit.Pids(bin), testkit.Pids(hello)...) {
		if pid == up.Process.Pid {
			continue
		}
		children++
		if holds(pid) {
			t.Errorf("child %d holds the descriptor up inherited", pid)
		}
	}
	if children < 4 { // the data plane and three instances
		t.Fatalf("%d children of up found, want the data plane and 3 instances", children)
	}
}

// buildRedblack builds the redblack binary into a temp dir; every process
// of it (up, its data plane) is killed when the test ends, even a failed
// one.
func buildRedblack(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "redblack")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/redblack").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Cleanup(func() { testkit.KillAll(bin) })
	return bin
}

// TestUpProcess runs `redblack up` as a real process: it prints the ready
// line, stops on SIGTERM with status 0, and a restart keeps the data.
func TestUpProcess(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "redblack")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/redblack").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// up's data plane is its own process of bin, which a SIGKILL of up
	// leaves running: none outlives the test, even a failed one
	t.Cleanup(func() { testkit.KillAll(bin) })
	data := t.TempDir()
	// the CLI finds up's admin creds on its own, through the data directory
	t.Setenv("REDBLACK_DATA", data)
	up := func() (string, *exec.Cmd) { return startUp(t, bin, data, "127.0.0.1:0") }
	stop := func(cmd *exec.Cmd) {
		cmd.Process.Signal(syscall.SIGTERM)
		errc := make(chan error, 1)
		go func() { errc <- cmd.Wait() }()
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("up exited with %v after SIGTERM", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("up did not stop on SIGTERM")
		}
	}
	hello, err := testkit.BuildHello(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	before := testkit.CountProcesses(hello)
	t.Cleanup(func() { testkit.KillAll(hello) })
	url, cmd := up()
	run(t, url, "service", "apply", "-f", writeFile(t, strings.Replace(helloSpec, "[hello]", "["+hello+"]", 1)))
	// the release launches hello-v001 (capacity 3) and bakes it for 5 min
	if code, out, errs := run(t, url, "release", "hello", "--version", "v1"); code != 0 {
		t.Fatalf("release: %q %q", out, errs)
	}
	waitListed := func(url string) string {
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, out, _ := run(t, url, "fleet", "ls"); strings.Contains(out, "3/3") {
				return out
			}
		}
		t.Fatal("the group never had 3 instances up")
		return ""
	}
	first := waitListed(url)

	// up dies without warning: its instances keep running...
	cmd.Process.Kill()
	cmd.Wait()
	if n := testkit.CountProcesses(hello) - before; n != 3 {
		t.Fatalf("%d instances after up was killed, want 3 still running", n)
	}
	// ...and the next up re-adopts them (same instances, same addresses)
	url, cmd = up()
	second := waitListed(url)
	if addrs(first) != addrs(second) {
		t.Fatalf("not re-adopted:\n%s\n%s", first, second)
	}
	// the release goes on: a step in hand at the kill is redelivered
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, out, _ := run(t, url, "events", "--service", "hello")
		if strings.Contains(out, "release.traffic.switched") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart events = %q", out)
		}
	}
	if _, out, _ := run(t, url, "status", "hello"); !strings.Contains(out, "baking") {
		t.Fatalf("after restart the release is not baking: %q", out)
	}
	// --json, for scripts
	var groups []struct {
		Spec      struct{ Group string }
		Instances []struct{ State string }
	}
	if _, out, _ := run(t, url, "fleet", "ls", "hello", "--json"); json.Unmarshal([]byte(out), &groups) != nil || len(groups) != 1 ||
		groups[0].Spec.Group != "hello-v001" || len(groups[0].Instances) != 3 {
		t.Fatalf("fleet ls --json: %q", out)
	}
	var rt struct {
		Active   string         `json:"active"`
		Weights  map[string]int `json:"weights"`
		Revision uint64         `json:"revision"`
	}
	if _, out, _ := run(t, url, "traffic", "get", "hello", "--json"); json.Unmarshal([]byte(out), &rt) != nil || rt.Active != "hello-v001" ||
		rt.Weights["hello-v001"] != 1000 || rt.Revision == 0 {
		t.Fatalf("traffic get --json: %q", out)
	}
	stop(cmd) // a graceful stop stops every instance
	if n := testkit.CountProcesses(hello) - before; n != 0 {
		t.Fatalf("%d instances leaked after up stopped", n)
	}
}

// checkSnakeCase fails the test for a JSON object key that is not
// snake_case anywhere in doc.
func checkSnakeCase(t *testing.T, doc string) {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if !snake.MatchString(k) {
					t.Errorf("%s.%s: not a snake_case key", path, k)
				}
				walk(path+"."+k, e)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		}
	}
	walk("", v)
}

// addrs picks the instance addresses out of `fleet ls`.
func addrs(ls string) string {
	var out []string
	for _, f := range strings.Fields(ls) {
		if strings.HasPrefix(f, "127.0.0.1:") {
			out = append(out, f)
		}
	}
	return strings.Join(out, ",")
}

func TestChaosConfigPauseAndDays(t *testing.T) {
	url := startMesh(t)
	if code, out, errs := run(t, url, "chaos", "config", "--enabled", "--leashed=false", "--window", "10:00-16:00", "--days", "mon-wed", "--tz", "Europe/Amsterdam"); code != 0 ||
		!strings.Contains(out, `"enabled": true`) || !strings.Contains(out, `"leashed": false`) || !strings.Contains(out, `"start": "10:00"`) || !strings.Contains(out, `"days": [`) {
		t.Fatalf("config = %d %q %q", code, out, errs)
	}
	if code, _, errs := run(t, url, "chaos", "config", "--window", "16:00-10:00"); code != 1 || !strings.Contains(errs, "nothing stored") {
		t.Fatalf("bad window = %d %q", code, errs)
	}
	if code, out, _ := run(t, url, "chaos", "pause"); code != 0 || !strings.Contains(out, `"paused": true`) || !strings.Contains(out, `"start": "10:00"`) {
		t.Fatalf("pause = %d %q", code, out)
	}
	if code, out, _ := run(t, url, "chaos", "resume"); code != 0 || strings.Contains(out, `"paused"`) {
		t.Fatalf("resume = %d %q", code, out)
	}
	// no service opts in: the schedule is empty; a kill on demand is skipped with the reason
	if code, out, _ := run(t, url, "chaos", "schedule"); code != 0 || strings.TrimSpace(out) != "SERVICE  UNIT  AT  MODE" {
		t.Fatalf("schedule = %d %q", code, out)
	}
	run(t, url, "service", "apply", "-f", writeFile(t, helloSpec))
	if code, out, _ := run(t, url, "chaos", "kill", "hello"); code != 1 || !strings.Contains(out, "chaos is not enabled for hello") {
		t.Fatalf("kill = %d %q", code, out)
	}
	if ds, err := parseDays("mon,wed"); err != nil || len(ds) != 2 || ds[1] != time.Wednesday {
		t.Fatalf("%v %v", ds, err)
	}
	if _, err := parseDays("fri-mon"); err == nil {
		t.Fatal("fri-mon accepted")
	}
}

// TestUpProviderAWSFlags: `up --provider aws` builds the aws provider, the
// ALB edge and the CloudWatch bridge from the standard AWS configuration
// (here moto, through AWS_ENDPOINT_URL); bad flags are named.
func TestUpProviderAWSFlags(t *testing.T) {
	srv := moto.Start(t)
	motoEnv(t, srv)
	ctx := context.Background()
	parse := func(args ...string) *awsFlags {
		t.Helper()
		f := &awsFlags{}
		cmd := &cobra.Command{Use: "up"}
		f.register(cmd)
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--provider", "gcp"}, "want local or aws"},
		{[]string{"--provider", "aws"}, "needs --aws-subnets"},
		{[]string{"--provider", "aws", "--aws-subnets", "subnet-1", "--aws-volume-size", "0"}, "want 1..16384 GiB"},
		{[]string{"--provider", "aws", "--aws-subnets", "subnet-1", "--aws-listener", "hello"}, "want SERVICE=arn"},
		{[]string{"--provider", "aws", "--aws-subnets", "subnet-1", "--aws-listener", "hello=arn:x"}, "needs --aws-vpc"},
		{[]string{"--provider", "aws", "--aws-subnets", "subnet-1", "--aws-vpc", "vpc-1", "--aws-listener", "hello=arn:x", "--aws-metrics-period", "7"}, "want 1, 5, 10, 30"},
	} {
		cfg := mesh.DefaultConfig()
		if err := parse(c.args...).apply(ctx, &cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.args, err, c.want)
		}
	}
	cfg := mesh.DefaultConfig()
	f := parse("--provider", "aws", "--aws-subnets", "subnet-1,subnet-2", "--aws-vpc", "vpc-1",
		"--aws-listener", "hello=arn:aws:elasticloadbalancing:us-east-1:1:listener/app/edge/1/2", "--aws-metrics-period", "1")
	if err := f.apply(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Provisioner.Provider == nil || cfg.Router.Edge == nil || cfg.Router.CloudWatch == nil {
		t.Fatalf("provider %v edge %v cloudwatch %v", cfg.Provisioner.Provider, cfg.Router.Edge, cfg.Router.CloudWatch)
	}
	// the provider talks to moto: an empty account lists no groups
	if gs, err := cfg.Provisioner.Provider.ListGroups(ctx, ""); err != nil || len(gs) != 0 {
		t.Fatalf("list on moto: %v %v", gs, err)
	}
	// up --nodes passes each process the flags it takes, and only those
	prov, rt := f.args()
	for _, want := range []string{"--provider=aws", "--aws-subnets=subnet-1,subnet-2", "--aws-vpc=vpc-1", "--aws-listener=hello=arn:aws:elasticloadbalancing:us-east-1:1:listener/app/edge/1/2"} {
		if !slices.Contains(prov, want) {
			t.Errorf("provisioner args %q lack %q", prov, want)
		}
	}
	if slices.Contains(prov, "--aws-metrics-period=1") || !slices.Contains(rt, "--aws-metrics-period=1") || slices.Contains(rt, "--provider=aws") || !slices.Contains(rt, "--aws-vpc=vpc-1") {
		t.Errorf("router args %q, provisioner args %q", rt, prov)
	}
	local := mesh.DefaultConfig()
	if err := parse().apply(ctx, &local); err != nil || local.Provisioner.Provider != nil {
		t.Fatalf("local: %v", err)
	}
}

// TestTopologyCheck: against up's mesh nothing is left to change, and every
// stream and bucket is listed with its fields.
func TestTopologyCheck(t *testing.T) {
	url := startMesh(t)
	code, out, errs := run(t, url, "topology", "check", "--all")
	if code != 0 || !strings.Contains(out, "at 1 replicas: 0 to change") {
		t.Fatalf("check: %d %q %q", code, out, errs)
	}
	for _, want := range []string{"stream  RELEASES", "deny_purge", "bucket  instances", "ttl", "15s"} {
		if !strings.Contains(out, want) {
			t.Errorf("check lacks %q:\n%s", want, out)
		}
	}
	if code, out, _ = run(t, url, "topology", "check", "--replicas", "3"); code != 0 || !strings.Contains(out, "raise") || !strings.Contains(out, "to change") {
		t.Fatalf("check at 3 replicas: %d %q", code, out)
	}
}

// Every service's program binds its flags beside svcmain's common ones
// without a clash (a flag defined twice panics when the program starts).
func TestProgramsFlags(t *testing.T) {
	for name, p := range programs {
		var out bytes.Buffer
		if code := svcmain.Run(p(), []string{"-h"}, &out); code != 2 || !strings.Contains(out.String(), "-server") {
			t.Errorf("%s -h: exit %d, %q", name, code, out.String())
		}
	}
}

// TestSecondUpOnTheSameDataIsRefused: a second up on a data directory in
// use is refused at once, naming the first's pid, and the first goes on
// serving (issue 29: a second up replaced the first's data plane and
// instances); once the first is gone, an up on it starts, and its ready
// line gives absolute paths even for a relative --data.
func TestSecondUpOnTheSameDataIsRefused(t *testing.T) {
	bin := buildRedblack(t)
	data := t.TempDir()
	t.Setenv("REDBLACK_DATA", data)
	url, first := startUp(t, bin, data, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	started := time.Now()
	out, err := exec.CommandContext(ctx, bin, "up", "--data", data, "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0", "--admin", "", "--ui", "").CombinedOutput()
	took := time.Since(started)
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("in use by redblack up (pid %d)", first.Process.Pid)) {
		t.Fatalf("a second up on the same data: %v after %s:\n%s", err, took, out)
	}
	if took > 5*time.Second {
		t.Errorf("refused after %s, not at once", took)
	}
	if code, out, errs := run(t, url, "service", "list"); code != 0 {
		t.Fatalf("the first up after the second was refused: %d %s %s", code, out, errs)
	}
	// in the background too, before it starts anything
	if out, err := exec.CommandContext(ctx, bin, "up", "--background", "--data", data).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), fmt.Sprintf("in use by redblack up (pid %d)", first.Process.Pid)) {
		t.Fatalf("up --background on the same data: %v\n%s", err, out)
	}
	// a port in use is named with its holder (issue 29: "embedded server …
	// not ready in 10s"): the first up's NATS port, and an admin port
	natsPort := url[strings.LastIndex(url, ":")+1:]
	held := fmt.Sprintf("is held by pid %d (", first.Process.Pid)
	started = time.Now()
	if out, err := exec.CommandContext(ctx, bin, "up", "--data", t.TempDir(), "--nats", "127.0.0.1:"+natsPort, "--http", "127.0.0.1:0", "--admin", "", "--ui", "").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "127.0.0.1:"+natsPort+": address in use: port "+natsPort+" "+held) || time.Since(started) > 5*time.Second {
		t.Fatalf("an up on a NATS port in use: %v after %s:\n%s", err, time.Since(started), out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if out, err := exec.CommandContext(ctx, bin, "up", "--data", t.TempDir(), "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0", "--admin", ln.Addr().String(), "--ui", "").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), fmt.Sprintf("address in use: port %d is held by pid %d (", ln.Addr().(*net.TCPAddr).Port, os.Getpid())) {
		t.Fatalf("an up on an admin port in use: %v\n%s", err, out)
	}
	// down stops it, and says so; a second down finds nothing to stop
	if out, err := exec.CommandContext(ctx, bin, "down", "--data", data).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), fmt.Sprintf("redblack up (pid %d) stopped in", first.Process.Pid)) {
		t.Fatalf("down: %v\n%s", err, out)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("up stopped by down: %v", err)
	}
	if out, err := exec.CommandContext(ctx, bin, "down", "--data", data).CombinedOutput(); err != nil || !strings.Contains(string(out), "no redblack up runs on") {
		t.Fatalf("a second down: %v\n%s", err, out)
	}
	// free again; and given as a relative path, the ready line names it,
	// and the creds, absolute
	again := exec.Command(bin, "up", "--data", filepath.Base(data), "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0", "--admin", "", "--ui", "")
	again.Dir = filepath.Dir(data)
	stdout, _ := again.StdoutPipe()
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Process.Kill(); again.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, " data="+data+" ") || !strings.Contains(line, " creds="+filepath.Join(data, "creds", "admin.creds")+" ") {
		t.Fatalf("ready line of an up on a relative --data: %q (%v)", line, err)
	}
}

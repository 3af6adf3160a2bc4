package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// clusterSpec is hello with short phases, for releases on the cluster.
const clusterSpec = `name: hello
owner: team-hello
capacity: 2
health: {path: /healthz, interval: 250ms, healthy_threshold: 1, unhealthy_threshold: 2}
artifact: {command: [HELLO]}
strategy:
  canary: {capacity: 1, weight: 20, duration: 2s, interval: 500ms, min_samples: 20}
  bake: {duration: 2s}
`

// TestUpNodes runs `redblack up --nodes 3` as a real process: three NATS
// server processes forming a JetStream cluster and the five services each
// in its own supervised process. Under load through the router, a release
// completes; the canary service's process is SIGKILLed, restarted by up,
// and the next release completes; a NATS node is SIGKILLed (and restarted
// by up), and once every stream has a leader again the next release
// completes. No request through the router fails across either death.
// SIGTERM stops every process up started, and every instance.
func TestUpNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster and five service processes")
	}
	u := startUpNodes(t)
	up, exited, logs, fields, pids, hello, urls, cli, release := u.up, u.exited, u.logs, u.fields, u.pids, u.hello, u.urls, u.cli, u.release
	if code, out, errs := cli("topology", "check"); code != 0 || !strings.Contains(out, "at 3 replicas: 0 to change") {
		t.Fatalf("topology check: %d %s %s", code, out, errs)
	}
	release("v1")
	var failures testkit.SyncBuffer // the first failed requests, for the report
	var nfail atomic.Int64
	load := bench.StartLoad(fields["http"], "hello", 2, nil, func(err error, status int) {
		if nfail.Add(1) <= 5 {
			fmt.Fprintf(&failures, "%s status %d: %v\n", time.Now().Format("15:04:05.000"), status, err)
		}
	})
	defer load.Stop()

	// a service process dies: up starts it again, and the next release completes
	if err := syscall.Kill(pids["canary"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), `"process":"canary"`) || !strings.Contains(logs.String(), "process restarted"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the canary process was not restarted:\n%s", logs.String())
		}
	}
	// ...and registers again before the next release is asked for
	nc, err := nats.Connect(urls, nats.UserCredentials(fields["creds"]))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := nc.Request("$SRV.PING.redblack-canary", nil, 500*time.Millisecond); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted canary never registered:\n%s", logs.String())
		}
	}
	release("v2")

	// a NATS node dies (up starts it again): once every stream and bucket
	// has a leader again, the next release completes, and the router
	// served throughout
	beforeKill := load.Failed()
	if err := syscall.Kill(pids["n1"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	settled := time.Now()
	lctx, lcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer lcancel()
	if err := topology.AwaitLeaders(lctx, js); err != nil {
		t.Fatalf("after the node's death: %v\n%s", err, logs.String())
	}
	t.Logf("every stream led again %s after the node's death", time.Since(settled).Round(time.Millisecond))
	release("v3")
	ok, failed, _ := load.Stop()
	t.Logf("load: %d ok, %d failed (%d before the node's death)", ok, failed, beforeKill)
	if ok == 0 || failed != 0 {
		t.Errorf("load through the router: %d ok, %d failed (%d before the node's death); the first:\n%s\nup's log:\n%s", ok, failed, beforeKill, failures.String(), logs.String())
	}

	// SIGTERM: every process up started stops, and every instance
	up.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if *u.upErr != nil {
			t.Fatalf("up exited with %v after SIGTERM\n%s", *u.upErr, logs.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("up did not stop in 60 s")
	}
	for name, pid := range pids {
		if name != "canary" && name != "n1" && syscall.Kill(pid, 0) == nil {
			t.Errorf("%s (pid %d) still runs after up stopped", name, pid)
		}
	}
	if n := testkit.CountProcesses(hello); n != 0 {
		t.Errorf("%d hello instances left", n)
	}
}

// upNodes is a running `redblack up --nodes 3` process, with what its ready
// line says.
type upNodes struct {
	up      *exec.Cmd
	exited  chan struct{}
	upErr   *error
	logs    *testkit.SyncBuffer
	fields  map[string]string
	pids    map[string]int // n1…, canary…, canary#2…
	hello   string
	urls    string
	cli     func(args ...string) (int, string, string)
	release func(v string)
}

// startUpNodes builds the binary and hello, runs up --nodes 3 with extra
// arguments, waits for its ready line, checks every process it names runs,
// and applies clusterSpec. Everything it started is stopped in cleanups.
func startUpNodes(t *testing.T, extra ...string) *upNodes {
	t.Helper()
	u := launchUp(t, 3, nil, extra...)
	if code, out, errs := u.cli("service", "apply", "-f", writeFile(t, strings.Replace(clusterSpec, "HELLO", u.hello, 1))); code != 0 {
		t.Fatalf("apply: %s %s", out, errs)
	}
	return u
}

// launchUp runs up --nodes with env added to its environment and extra
// arguments, and returns once its ready line is read and every process it
// names runs.
func launchUp(t *testing.T, nodes int, env []string, extra ...string) *upNodes {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "redblack")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/redblack").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	hello, err := testkit.BuildHello(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testkit.KillAll(hello); testkit.KillAll(bin) })
	data := t.TempDir()
	// the admin port and the dashboard on free ports: every cluster test
	// runs them, as the one-process up does
	up := exec.Command(bin, append([]string{"up", "--nodes", strconv.Itoa(nodes), "--data", data, "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "warn",
		"--admin", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--bake-latency-slack", testkit.LatencySlack.String()}, extra...)...)
	logs := &testkit.SyncBuffer{}
	up.Stderr = logs
	up.Env = append(os.Environ(), env...)
	up.WaitDelay = 10 * time.Second // its children hold its stderr until they die
	stdout, _ := up.StdoutPipe()
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	var upErr error
	exited := make(chan struct{})
	go func() { upErr = up.Wait(); close(exited) }()
	t.Cleanup(func() {
		up.Process.Kill()
		<-exited
		testkit.KillAll(bin) // the nodes and services, should up have left any
	})
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var ready string
	select {
	case line, ok := <-lines:
		if !ok {
			<-exited
			t.Fatalf("up exited without a ready line: %v\n%s", upErr, logs.String())
		}
		ready = line
	case <-exited:
		t.Fatalf("up exited: %v\n%s", upErr, logs.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("no ready line in 90 s\n%s", logs.String())
	}
	go func() {
		for range lines {
		}
	}()
	fields := map[string]string{}
	for _, f := range strings.Fields(ready) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	pids := map[string]int{}
	for _, list := range []string{fields["nodes"], fields["services"]} {
		for _, p := range strings.Split(list, ",") {
			parts := strings.SplitN(p, "/", 3)
			if len(parts) < 2 {
				t.Fatalf("ready line %q", ready)
			}
			pids[parts[0]], _ = strconv.Atoi(parts[1])
		}
	}
	names := []string{"canary", "provisioner", "router", "watchdog", "chaos"}
	for i := range nodes {
		names = append(names, fmt.Sprintf("n%d", i+1))
	}
	for _, name := range names {
		if pids[name] <= 0 || syscall.Kill(pids[name], 0) != nil {
			t.Fatalf("%s: pid %d not running (ready line %q)", name, pids[name], ready)
		}
	}
	urls := fields["nats"]
	if strings.Count(urls, "nats://127.0.0.1:") != nodes {
		t.Fatalf("nats=%q", urls)
	}
	u := &upNodes{up: up, exited: exited, upErr: &upErr, logs: logs, fields: fields, pids: pids, hello: hello, urls: urls}
	u.cli = func(args ...string) (int, string, string) {
		return run(t, urls, append([]string{"--creds", fields["creds"]}, args...)...)
	}
	u.release = func(v string) {
		t.Helper()
		code, out, errs := u.cli("release", "hello", "--version", v, "--artifact", hello+" --version "+v, "--wait", "--timeout", "90s")
		if code != 0 || !strings.Contains(out, "completed") {
			t.Fatalf("release %s: %d\n%s\n%s\nup's log:\n%s", v, code, out, errs, logs.String())
		}
	}
	return u
}

// pid is the process's pid now: the ready line's, or the one up's log gave
// when it last restarted it.
func (u *upNodes) pid(name string) int {
	pid := u.pids[name]
	for _, line := range strings.Split(u.logs.String(), "\n") {
		var l struct {
			Process string `json:"process"`
			Pid     int    `json:"pid"`
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Process == name && l.Message == "process restarted" {
			pid = l.Pid
		}
	}
	return pid
}

// admin connects to up's cluster as the admin (reconnecting across node
// deaths) and opens bucket; the connection closes when the test ends.
func (u *upNodes) admin(t *testing.T, ctx context.Context, bucket string) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	nc, err := nats.Connect(u.urls, nats.UserCredentials(u.fields["creds"]), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

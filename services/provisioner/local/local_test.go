package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/artifact"
	"github.com/redblack/redblack/shared/testkit"

	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/services/provisioner/fleettest"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/spec"
)

// hello is the examples/hello binary, built once for the package.
var hello string

func TestMain(m *testing.M) {
	if addr := os.Getenv(probeBindEnv); addr != "" {
		os.Exit(probeBind(addr)) // started as an instance by TestSandboxHoldsTheAttacks
	}
	testkit.MainWithHello(m, &hello)
}

var fast = spec.Health{Path: "/healthz", Interval: spec.Duration(100 * time.Millisecond), HealthyThreshold: 2, UnhealthyThreshold: 2}

func testConfig(t *testing.T) Config {
	return Config{Dir: t.TempDir(), GracePeriod: 2 * time.Second, StartupProbe: 50 * time.Millisecond, BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond, CrashLoopWindow: 10 * time.Second}
}

// recorder collects a provider's changes.
type recorder struct {
	mu      sync.Mutex
	changes []fleet.Change
}

func (r *recorder) observe(c fleet.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
}

func (r *recorder) count(typ fleet.ChangeType) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.changes {
		if c.Type == typ {
			n++
		}
	}
	return n
}

func (r *recorder) waitFor(t *testing.T, typ fleet.ChangeType, n int) fleet.Change {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		seen := 0
		for _, c := range r.changes {
			if c.Type == typ {
				seen++
				if seen == n {
					r.mu.Unlock()
					return c
				}
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %d× %s; changes: %+v", n, typ, r.changes)
	return fleet.Change{}
}

func open(t *testing.T, cfg Config) (*Local, *recorder) {
	t.Helper()
	r := &recorder{}
	l, err := Open(cfg, r.observe)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(true) })
	return l, r
}

func TestProviderBehaviour(t *testing.T) {
	fleettest.Run(t, func(t *testing.T) fleettest.Harness {
		l, _ := open(t, testConfig(t))
		return fleettest.Harness{Provider: l, Artifact: events.Artifact{Command: []string{hello}}, Health: fast}
	})
}

func groupSpec(name string, n int, args ...string) fleet.GroupSpec {
	return fleet.GroupSpec{Service: "hello", Group: name, Version: "v7", Capacity: n,
		Artifact: events.Artifact{Command: append([]string{hello}, args...), Env: map[string]string{"EXTRA": "1"}}, Health: fast}
}

func TestInstanceEnvironmentPortAndLog(t *testing.T) {
	l, r := open(t, testConfig(t))
	if _, err := l.CreateGroup(context.Background(), groupSpec("hello-v007", 1)); err != nil {
		t.Fatal(err)
	}
	g := fleettest.WaitUp(t, l, "hello-v007", 1, 15*time.Second)
	i := g.Instances[0]
	if !strings.HasPrefix(i.Address, "127.0.0.1:") {
		t.Fatalf("address %q is not loopback", i.Address)
	}
	resp, err := http.Get("http://" + i.Address + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// hello reports REDBLACK_VERSION and REDBLACK_INSTANCE from its environment
	if want := fmt.Sprintf("hello from v7 (%s)", i.ID); !strings.Contains(string(body), want) {
		t.Fatalf("body %q, want %q", body, want)
	}
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", i.PID))
	for _, kv := range []string{"REDBLACK_SERVICE=hello", "REDBLACK_GROUP=hello-v007", "REDBLACK_INSTANCE=" + i.ID, "EXTRA=1", "PORT="} {
		if !strings.Contains(string(env), kv) {
			t.Errorf("environment lacks %s", kv)
		}
	}
	if pgid, _ := syscall.Getpgid(i.PID); pgid != i.PID {
		t.Errorf("instance not in its own process group: pgid %d pid %d", pgid, i.PID)
	}
	logb, err := os.ReadFile(l.LogFile("hello-v007", i.ID))
	if err != nil || !strings.Contains(string(logb), "listening on "+i.Address) {
		t.Fatalf("log file: %q %v", logb, err)
	}
	if r.count(fleet.Started) != 1 || r.count(fleet.Up) != 1 {
		t.Fatalf("changes %+v", r.changes)
	}
}

func TestExternalKillIsReplaced(t *testing.T) {
	l, r := open(t, testConfig(t))
	l.CreateGroup(context.Background(), groupSpec("hello-v001", 2))
	g := fleettest.WaitUp(t, l, "hello-v001", 2, 15*time.Second)
	syscall.Kill(g.Instances[0].PID, syscall.SIGKILL)
	term := r.waitFor(t, fleet.Terminated, 1)
	if term.Instance.ID != g.Instances[0].ID || !strings.Contains(term.Reason, "killed") {
		t.Fatalf("terminated %+v", term)
	}
	rep := r.waitFor(t, fleet.Replaced, 1)
	if !strings.Contains(rep.Reason, g.Instances[0].ID) {
		t.Fatalf("replaced %+v", rep)
	}
	fleettest.WaitUp(t, l, "hello-v001", 2, 15*time.Second)
	if r.count(fleet.CrashLoop) != 0 {
		t.Fatal("a kill of a healthy instance counted as a crash loop")
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	l, r := open(t, testConfig(t))
	s := groupSpec("hello-v001", 1)
	s.Artifact.Command = []string{"/bin/false"}
	l.CreateGroup(context.Background(), s)
	c := r.waitFor(t, fleet.CrashLoop, 1)
	if !strings.Contains(c.Reason, "exited with status 1") || !strings.Contains(c.Reason, ".log") {
		t.Fatalf("crash loop reason %q", c.Reason)
	}
	started := r.count(fleet.Started)
	if started < 3 || started > 6 {
		t.Fatalf("%d starts before the crash loop was reported", started)
	}
}

func TestMissingCommandCreatesNothing(t *testing.T) {
	l, _ := open(t, testConfig(t))
	s := groupSpec("hello-v001", 1)
	s.Artifact.Command = []string{"/no/such/binary"}
	if _, err := l.CreateGroup(context.Background(), s); !errors.Is(err, fleet.ErrBadArtifact) {
		t.Fatalf("create = %v, want ErrBadArtifact", err)
	}
	if _, err := l.DescribeGroup(context.Background(), "hello-v001"); !errors.Is(err, fleet.ErrGroupNotFound) {
		t.Fatal("a group was left behind")
	}
}

func TestHealthDownAndNeverUp(t *testing.T) {
	l, r := open(t, testConfig(t))
	l.CreateGroup(context.Background(), groupSpec("hello-v001", 1, "--fail-health-after", "1s"))
	r.waitFor(t, fleet.Up, 1)
	d := r.waitFor(t, fleet.Down, 1)
	if !strings.Contains(d.Reason, "503") {
		t.Fatalf("down reason %q", d.Reason)
	}
	l.CreateGroup(context.Background(), groupSpec("hello-v002", 1, "--fail-health"))
	time.Sleep(time.Second) // many startup probes: it must stay starting
	g, _ := l.DescribeGroup(context.Background(), "hello-v002")
	if len(g.Instances) != 1 || g.Instances[0].State != "starting" {
		t.Fatalf("unhealthy instance: %+v", g.Instances)
	}
}

func TestStopUsesSIGTERMThenSIGKILL(t *testing.T) {
	cfg := testConfig(t)
	cfg.GracePeriod = 300 * time.Millisecond
	l, _ := open(t, cfg)
	// a shell that ignores SIGTERM, with a child in its process group
	script := filepath.Join(t.TempDir(), "stubborn.sh")
	os.WriteFile(script, []byte("#!/bin/sh\ntrap '' TERM\nsleep 300 &\nwhile true; do sleep 1; done\n"), 0o755)
	if err := artifact.Share(script); err != nil {
		t.Fatal(err)
	}
	s := groupSpec("hello-v001", 1)
	s.Artifact.Command = []string{script}
	l.CreateGroup(context.Background(), s)
	var pid int
	for deadline := time.Now().Add(5 * time.Second); pid == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		g, _ := l.DescribeGroup(context.Background(), "hello-v001")
		if len(g.Instances) == 1 {
			pid = g.Instances[0].PID
		}
	}
	for deadline := time.Now().Add(5 * time.Second); liveInGroup(pid) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) { // the shell and its child
			t.Fatalf("the script's process group has %d processes, want 2", liveInGroup(pid))
		}
	}
	start := time.Now()
	if err := l.DestroyGroup(context.Background(), "hello-v001"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < cfg.GracePeriod {
		t.Fatalf("destroy took %s: SIGTERM was not given its grace period", took)
	}
	// the SIGKILLed processes leave the process table a moment later
	for deadline := time.Now().Add(2 * time.Second); liveInGroup(pid) != 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if n := liveInGroup(pid); n != 0 {
		t.Fatalf("%d processes of the group survived the destroy", n)
	}
}

func TestReadoptAfterRestartThenNoLeak(t *testing.T) {
	before := testkit.CountProcesses(hello)
	cfg := testConfig(t)
	l1, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	l1.CreateGroup(context.Background(), groupSpec("hello-v001", 3))
	g1 := fleettest.WaitUp(t, l1, "hello-v001", 3, 15*time.Second)
	l1.Close(false) // the provisioner dies; its instances keep running
	if n := testkit.CountProcesses(hello) - before; n != 3 {
		t.Fatalf("%d instances running after the provisioner stopped, want 3", n)
	}

	l2, r := open(t, cfg)
	g2 := fleettest.WaitUp(t, l2, "hello-v001", 3, 15*time.Second)
	for i := range g1.Instances {
		if g1.Instances[i].PID != g2.Instances[i].PID || g1.Instances[i].ID != g2.Instances[i].ID {
			t.Fatalf("not re-adopted: %+v vs %+v", g1.Instances[i], g2.Instances[i])
		}
	}
	if r.count(fleet.Started) != 0 {
		t.Fatalf("re-adoption started %d new instances", r.count(fleet.Started))
	}
	// a re-adopted instance that dies is still replaced
	syscall.Kill(g2.Instances[0].PID, syscall.SIGKILL)
	r.waitFor(t, fleet.Replaced, 1)
	fleettest.WaitUp(t, l2, "hello-v001", 3, 15*time.Second)

	if err := l2.DestroyGroup(context.Background(), "hello-v001"); err != nil {
		t.Fatal(err)
	}
	if n := testkit.CountProcesses(hello) - before; n != 0 {
		t.Fatalf("%d hello processes leaked", n)
	}
}

func TestOrphanOfUnknownGroupIsKilled(t *testing.T) {
	before := testkit.CountProcesses(hello)
	cfg := testConfig(t)
	l1, _ := Open(cfg, nil)
	l1.CreateGroup(context.Background(), groupSpec("hello-v001", 1))
	fleettest.WaitUp(t, l1, "hello-v001", 1, 15*time.Second)
	l1.Close(false)
	os.Remove(filepath.Join(cfg.Dir, "groups", "hello-v001.json")) // its group record is lost
	open(t, cfg)
	if n := testkit.CountProcesses(hello) - before; n != 0 {
		t.Fatalf("%d orphans left running", n)
	}
}

func TestCloseStopsEverythingAndGroupsComeBack(t *testing.T) {
	before := testkit.CountProcesses(hello)
	cfg := testConfig(t)
	l1, _ := Open(cfg, nil)
	l1.CreateGroup(context.Background(), groupSpec("hello-v001", 2))
	fleettest.WaitUp(t, l1, "hello-v001", 2, 15*time.Second)
	l1.Close(true)
	if n := testkit.CountProcesses(hello) - before; n != 0 {
		t.Fatalf("%d processes after Close(true)", n)
	}
	l2, _ := open(t, cfg)
	fleettest.WaitUp(t, l2, "hello-v001", 2, 15*time.Second)
}

// liveInGroup counts the live (not zombie) processes of process group pgid.
func liveInGroup(pgid int) int {
	n := 0
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == fmt.Sprint(pgid) {
			n++
		}
	}
	return n
}

// A gRPC service's instances are checked with grpc.health.v1, not an HTTP
// GET: hello --grpc's health service says SERVING, then NOT_SERVING once
// --fail-health-after has passed, and the instance goes down for it.
func TestGRPCHealthCheck(t *testing.T) {
	l, r := open(t, testConfig(t))
	s := groupSpec("hello-v001", 1, "--grpc", "--fail-health-after", "2s")
	s.Protocol = spec.ProtocolGRPC
	s.Health.Path = "/nothing-here" // not asked: a GET of it would fail
	if _, err := l.CreateGroup(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, fleet.Up, 1)
	d := r.waitFor(t, fleet.Down, 1)
	if !strings.Contains(d.Reason, "gRPC health check: NOT_SERVING") {
		t.Fatalf("down reason %q", d.Reason)
	}
}

// TestCloseDuringCreate: a group created while the provider closes (a
// create command in flight at shutdown) is either refused or halted and
// stopped with the rest: its supervisor is set up before Close can see the
// group (the race detector, which ./scripts/test runs this package under,
// reports the old order), and no instance of it outlives Close(true).
func TestCloseDuringCreate(t *testing.T) {
	for round := range 30 {
		l, err := Open(testConfig(t), func(fleet.Change) {})
		if err != nil {
			t.Fatal(err)
		}
		created := make(chan error, 1)
		go func() {
			_, err := l.CreateGroup(context.Background(), groupSpec(fmt.Sprintf("hello-v%03d", round+1), 1))
			created <- err
		}()
		if round%2 == 1 {
			time.Sleep(time.Duration(round) * time.Millisecond) // spread Close over the create
		}
		l.Close(true)
		if err := <-created; err != nil && !errors.Is(err, errClosed) {
			t.Fatal(err)
		}
		// the package's tests run one at a time: any hello is this round's
		if n := testkit.CountProcesses(hello); n != 0 {
			testkit.KillAll(hello)
			t.Fatalf("round %d: %d instances outlived Close(true)", round, n)
		}
	}
}

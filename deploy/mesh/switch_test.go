package mesh_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/deploy/bench"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

var hello string

func TestMain(m *testing.M) {
	dir, _ := os.MkdirTemp("", "mesh-test-")
	hello = filepath.Join(dir, "hello")
	if out, err := exec.Command("go", "build", "-o", hello, "github.com/redblack/redblack/examples/hello").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build hello: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	killAll(hello)
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestSwitchesAndKillsUnderLoadDropNothing: constant load through the real
// router while traffic switches 20 times between two groups of real hello
// processes and 3 instances are SIGKILLed: not one request fails.
func TestSwitchesAndKillsUnderLoadDropNothing(t *testing.T) {
	m := start(t, t.TempDir())
	nc, err := m.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kv, _ := js.KeyValue(ctx, topology.BucketServices)
	spec.Apply(ctx, kv, spec.Service{Name: "hello", Owner: "t", Capacity: 3,
		Health:   spec.Health{Path: "/healthz", Interval: spec.Duration(200 * time.Millisecond), HealthyThreshold: 2, UnhealthyThreshold: 2},
		Artifact: spec.Artifact{Command: []string{hello}}})
	tap, _ := nc.SubscribeSync(">")
	publish := func(k events.Kind, data any) events.Event {
		ev, err := events.New("test", k, "hello", "", data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := natsx.Publish(ctx, js, k.Subject("hello"), ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	for _, g := range []string{"hello-v001", "hello-v002"} {
		publish(events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: g, Version: g[len(g)-4:], Capacity: 3})
		if _, err := bench.Await(tap, events.ServerGroupReady, g, "", 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	switchTo := func(g string) {
		cmd := publish(events.TrafficSwitch, events.TrafficCommand{Service: "hello", Group: g})
		for {
			msg, err := tap.NextMsg(20 * time.Second)
			if err != nil {
				t.Fatalf("switch to %s: %v", g, err)
			}
			ev, err := events.Decode(msg.Data)
			if err != nil || !strings.HasPrefix(ev.ID, cmd.ID+":") {
				continue
			}
			if ev.Type != events.TrafficSwitched.Type() {
				t.Fatalf("switch to %s: %s %s", g, ev.Type, ev.Data)
			}
			return
		}
	}
	switchTo("hello-v001")

	url := "http://" + m.HTTP() + "/"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var ok, failed atomic.Int64
	versions := sync.Map{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop); wg.Wait() }) }
	t.Cleanup(stopLoad) // runs before the mesh stops, even on failure
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = "hello"
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					t.Logf("request failed: %v", err)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Logf("request failed: %d %s", resp.StatusCode, resp.Header.Get("X-Redblack-Error"))
					continue
				}
				ok.Add(1)
				versions.Store(resp.Header.Get("X-Version"), true)
			}
		}()
	}
	kills := 0
	for i := range 20 {
		group := []string{"hello-v002", "hello-v001"}[i%2]
		switchTo(group)
		if i%6 == 5 && kills < 3 { // kill an instance of the group that now takes the traffic
			g, err := bench.List(nc, group)
			if err != nil || len(g.Instances) == 0 {
				t.Fatalf("list %s: %v", group, err)
			}
			victim := g.Instances[0]
			syscall.Kill(victim.PID, syscall.SIGKILL)
			kills++
			// the next switch back to this group is refused until its
			// replacement is up (the traffic guard): wait for it
			if _, err := bench.Await(tap, events.InstanceUp, group, victim.ID, 20*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	stopLoad()
	_, v1 := versions.Load("v001")
	_, v2 := versions.Load("v002")
	t.Logf("%d requests, %d failed, %d switches, %d kills", ok.Load(), failed.Load(), 21, kills)
	if failed.Load() != 0 || ok.Load() < 200 || !v1 || !v2 || kills != 3 {
		t.Fatalf("%d ok, %d failed (want 0), versions v001 %v v002 %v, kills %d", ok.Load(), failed.Load(), v1, v2, kills)
	}
}

// killAll kills every process still running the binary at path.
func killAll(path string) {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if exe, err := os.Readlink(d + "/exe"); err == nil && exe == path {
			if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

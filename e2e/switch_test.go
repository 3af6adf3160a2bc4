package e2e_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/testkit"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

var hello string

func TestMain(m *testing.M) { testkit.MainWithHello(m, &hello) }

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

	load := bench.StartLoad(m.HTTP(), "hello", 4, nil, func(err error, status int) {
		t.Logf("request failed: %v %d", err, status)
	})
	t.Cleanup(func() { load.Stop() }) // before the mesh stops, even on failure
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
	ok, failed, versions := load.Stop()
	t.Logf("%d requests, %d failed, %d switches, %d kills", ok+failed, failed, 21, kills)
	if failed != 0 || ok < 200 || strings.Join(versions, ",") != "v001,v002" || kills != 3 {
		t.Fatalf("%d ok, %d failed (want 0), versions %v, kills %d", ok, failed, versions, kills)
	}
}

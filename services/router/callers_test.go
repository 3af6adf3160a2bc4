package router_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/redblack/redblack/services/router"
	"github.com/redblack/redblack/shared/discovery/lb"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/routing"
	"github.com/redblack/redblack/shared/subjects"
)

// A switch waits for the discovery clients of inner tiers as for routers:
// announced once a real client routes by it; a client stuck on an old
// revision holds it for CallerWait only, and is named in traffic.lagging.
func TestSwitchWaitsForDiscoveryClients(t *testing.T) {
	r := newRig(t, 1)
	const wait = time.Second
	r.startRouter(router.Config{CallerWait: wait})
	c, err := lb.Start(r.ctx, r.s.Conn(t), lb.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.register("hello-v001", "a", backend(t, "A", nil))
	_, out := r.traffic(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	sw := out[events.TrafficSwitched.Type()]
	var tr events.Traffic
	if err := sw.DecodeData(&tr); err != nil {
		t.Fatalf("switch answered %v", out)
	}
	if got := c.Revision("hello"); got < tr.Revision {
		t.Fatalf("switch to revision %d announced while the client routes by %d", tr.Revision, got)
	}
	if _, ok := out[events.TrafficLagging.Type()]; ok {
		t.Fatalf("a client that applied the switch reported lagging: %v", out)
	}

	// a caller stuck at revision 0: it answers the micro ping and the
	// applied ping, and never applies anything
	stuck := r.s.Conn(t)
	svc, err := natsx.AddMicro(stuck, natsx.MicroConfig{Name: routing.CallerMicro, Version: "0.0.1", Status: func() any { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	sub, _ := stuck.Subscribe(subjects.CallerApplied, func(m *nats.Msg) {
		b, _ := json.Marshal(routing.Applied{Router: "caller-stuck", Up: map[string]int{}})
		m.Respond(b)
	})
	defer sub.Unsubscribe()
	stuck.Flush()
	r.register("hello-v002", "b", backend(t, "B", nil))
	start := time.Now()
	_, out = r.traffic(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v002"})
	took := time.Since(start)
	lagEv, ok := out[events.TrafficLagging.Type()]
	if !ok {
		t.Fatalf("no traffic.lagging for a stuck client: %v", out)
	}
	var lag events.TrafficLag
	if err := lagEv.DecodeData(&lag); err != nil || len(lag.Callers) != 1 || lag.Callers[0] != "caller-stuck" || lag.Waited != wait {
		t.Fatalf("lagging event %+v %v", lag, err)
	}
	if _, ok := out[events.TrafficSwitched.Type()]; !ok || took < wait {
		t.Fatalf("switch with a stuck client: %v after %s (want switched after ≥ %s)", out, took, wait)
	}
	if got := c.Revision("hello"); got < lag.Revision {
		t.Fatalf("the live client routes by %d, the switch is %d", got, lag.Revision)
	}

	// the stuck caller goes away, as a destroyed canary's client does: the
	// next switch waits for the live client only, not for the gone one
	svc.Stop()
	sub.Unsubscribe()
	stuck.Flush()
	start = time.Now()
	_, out = r.traffic(events.TrafficSwitch, events.TrafficCommand{Group: "hello-v001"})
	if took := time.Since(start); took >= wait {
		t.Fatalf("a switch after a caller left took %s: it waited for the gone caller (%v)", took, out)
	}
	if _, ok := out[events.TrafficLagging.Type()]; ok {
		t.Fatalf("a caller that left is reported lagging: %v", out)
	}
	if _, ok := out[events.TrafficSwitched.Type()]; !ok {
		t.Fatalf("no switch: %v", out)
	}
}

// traffic publishes a command and gathers the router's events caused by
// it, by type, up to the final one (switched, restored, changed or
// refused), which it also returns.
func (r *rig) traffic(k events.Kind, c events.TrafficCommand) (events.Event, map[string]events.Event) {
	r.t.Helper()
	c.Service = "hello"
	ev, _ := events.New("test", k, "hello", "", c)
	b, _ := ev.Encode()
	r.nc.Publish(k.Subject("hello"), b)
	final := map[string]bool{events.TrafficChanged.Type(): true, events.TrafficSwitched.Type(): true, events.TrafficRestored.Type(): true, events.TrafficRefused.Type(): true}
	out := map[string]events.Event{}
	for {
		m, err := r.tap.NextMsg(20 * time.Second)
		if err != nil {
			r.t.Fatalf("no answer to %s: %v (so far %v)", k, err, out)
		}
		if e, err := events.Decode(m.Data); err == nil && strings.HasPrefix(e.ID, ev.ID) && e.Type != ev.Type {
			out[e.Type] = e
			if final[e.Type] {
				return e, out
			}
		}
	}
}

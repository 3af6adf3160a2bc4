package e2e_test

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/spec"
)

// resizes records hello's servergroup.resized events.
type resizes struct {
	mu  sync.Mutex
	got []events.ServerGroup
	at  []time.Time
}

// resizes records hello's servergroup.resized events from now on.
func (p *pipeline) resizes() *resizes {
	p.t.Helper()
	rs := &resizes{}
	if _, err := p.nc.Subscribe(events.ServerGroupResized.Subject("hello"), func(m *nats.Msg) {
		var g events.ServerGroup
		if ev, err := events.Decode(m.Data); err == nil && ev.DecodeData(&g) == nil {
			rs.mu.Lock()
			rs.got, rs.at = append(rs.got, g), append(rs.at, time.Now())
			rs.mu.Unlock()
		}
	}); err != nil {
		p.t.Fatal(err)
	}
	if err := p.nc.Flush(); err != nil {
		p.t.Fatal(err)
	}
	return rs
}

// reason is the reason of the first resize of group to n.
func (r *resizes) reason(group string, n int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if g.Group == group && g.Capacity == n {
			return g.Reason
		}
	}
	return ""
}

// await waits for a resize of group to n after from; it returns its time.
func (r *resizes) await(t *testing.T, group string, n int, from time.Time, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for i, g := range r.got {
			if g.Group == group && g.Capacity == n && r.at[i].After(from) {
				r.mu.Unlock()
				return r.at[i]
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("no resize of %s to %d within %s; resizes: %+v", group, n, limit, r.got)
	return time.Time{}
}

// A load step: the serving group scales up within its cooldown, a release
// during the scaled-up period launches its new group at the scaled-up
// size, and the group scales down once the load is gone.
func TestAutoscaleWithALoadStep(t *testing.T) {
	svc := fastSpec()
	svc.Capacity, svc.MaxCapacity = 1, 4
	const up, down, window = 2 * time.Second, 3 * time.Second, 2 * time.Second
	svc.Autoscale = &spec.Autoscale{Min: 1, Max: 3, TargetRequestsPerInstance: 20,
		Window: spec.Duration(window), ScaleUpCooldown: spec.Duration(up), ScaleDownCooldown: spec.Duration(down)}
	p := newPipeline(t, t.TempDir(), svc)
	rs := p.resizes()
	v1 := p.release("v1")
	p.await(v1, 60*time.Second, events.ReleaseCompleted)

	step := time.Now()
	p.startLoad()
	at := rs.await(t, "hello-v001", 3, step, up+window+5*time.Second)
	t.Logf("scaled up 1 → 3 %s after the load step (cooldown %s, window %s)", at.Sub(step).Round(time.Millisecond), up, window)

	v2 := p.release("v2")
	ev := p.await(v2, 60*time.Second, events.ClusterReady)
	var c events.Cluster
	if err := ev.DecodeData(&c); err != nil || c.Instances != 3 {
		t.Fatalf("v2 launched at %d instances (%v), want the scaled-up 3", c.Instances, err)
	}
	p.await(v2, 60*time.Second, events.ReleaseCompleted)
	if n := p.failures(); n != 0 {
		t.Errorf("%d failed requests through the scale-up and the release", n)
	}

	p.load.Stop()
	quiet := time.Now()
	at = rs.await(t, "hello-v002", 1, quiet, down+window+10*time.Second)
	t.Logf("scaled down 3 → 1 %s after the load stopped (cooldown %s)", at.Sub(quiet).Round(time.Millisecond), down)
}

// target_cpu on local: the provisioner reads its instances' CPU from /proc
// (through the group's host); under a load that burns 2 ms of CPU per
// request the group scales up, and down once the load is gone.
func TestAutoscaleOnCPU(t *testing.T) {
	svc := fastSpec()
	svc.Capacity, svc.MaxCapacity = 1, 4
	const up, down, window = 2 * time.Second, 3 * time.Second, 2 * time.Second
	svc.Autoscale = &spec.Autoscale{Min: 1, Max: 3, TargetCPU: 15,
		Window: spec.Duration(window), ScaleUpCooldown: spec.Duration(up), ScaleDownCooldown: spec.Duration(down)}
	p := newPipeline(t, t.TempDir(), svc)
	rs := p.resizes()
	v1 := p.release("v1", "--burn", "2ms")
	p.await(v1, 60*time.Second, events.ReleaseCompleted)
	step := time.Now()
	p.startLoad()
	at := rs.await(t, "hello-v001", 3, step, up+window+10*time.Second)
	t.Logf("scaled up 1 → 3 on CPU %s after the load step: %s", at.Sub(step).Round(time.Millisecond), rs.reason("hello-v001", 3))
	p.load.Stop()
	quiet := time.Now()
	at = rs.await(t, "hello-v001", 1, quiet, down+window+10*time.Second)
	t.Logf("scaled down 3 → 1 %s after the load stopped: %s", at.Sub(quiet).Round(time.Millisecond), rs.reason("hello-v001", 1))
}

package e2e_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/services/provisioner/fleet"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// storeSpec is examples/store released by rolling: 3 slots, one at a
// time, a 0.5 s health gate and a 2 s verify per batch.
func storeSpec() spec.Service {
	return bench.NewSpec("store", "t", hello).Capacity(3).LatencySlack(testkit.LatencySlack).
		Rolling(500*time.Millisecond, 2*time.Second).Build()
}

// newStoreTiers is a mesh of api (hello --store store, behind the router)
// and store (stateful, rolling), each released once.
func newStoreTiers(t *testing.T) *tiers {
	store, err := testkit.Build(t.TempDir(), testkit.StorePackage, "store")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testkit.KillAll(store) })
	tt := connectTiers(t)
	env, secrets, err := tt.m.Tier("api", []string{"store"})
	if err != nil {
		t.Fatal(err)
	}
	tt.art["api"] = events.Artifact{Command: []string{hello, "--store", "store"}, Env: env, EnvSecrets: secrets}
	tt.art["store"] = events.Artifact{Command: []string{store}}
	api := fastSpec()
	api.Name = "api"
	tt.apply(api)
	tt.apply(storeSpec())
	tt.await(tt.release("store", "v1"), 60*time.Second, events.ReleaseCompleted)
	tt.await(tt.release("api", "v1"), 60*time.Second, events.ReleaseCompleted)
	return tt
}

// startWriters starts n writers through the router and api, each over
// its 50 keys, stopped at the test's end at the latest.
func startWriters(t *testing.T, tt *tiers, n int) *bench.Writes {
	w := bench.StartWrites(tt.m.HTTP(), "api", n, 50)
	t.Cleanup(w.Stop)
	if err := w.AwaitOK(100, 20*time.Second); err != nil { // the writers are going
		t.Fatal(err)
	}
	return w
}

// TestRollingStoreUnderWrites: 4 writers put keys through api (which sends
// each to its store slot with the discovery client) while store rolls
// v1 → v2 one slot at a time, and the instance of a slot not yet replaced
// is SIGKILLed mid-roll: it is replaced in its slot with its volume, and
// the roll goes on. Then a v3 whose slot store-1 refuses writes rolls: its
// first batch passes its verify, its second fails it, and the replaced
// slots go back to v2 in reverse. Every write acknowledged at any time
// reads back with its last value, and none failed during the healthy roll.
func TestRollingStoreUnderWrites(t *testing.T) {
	tt := newStoreTiers(t)
	w := startWriters(t, tt, 4)
	w.Stage("v1→v2")
	v2 := tt.release("store", "v2")
	tt.await(v2, 30*time.Second, events.RollingBatchStarted)
	victim := tt.slotInstance("store-v001", "store-2")
	if victim.PID == 0 {
		t.Fatal("store-2 runs nowhere in store-v001")
	}
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if i := tt.slotInstance("store-v001", "store-2"); i.ID != "" && i.ID != victim.ID && i.State == discovery.StateUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store-2's instance %s was not replaced in store-v001", victim.ID)
		}
	}
	tt.await(v2, 90*time.Second, events.ReleaseCompleted)
	for b := 1; b <= 3; b++ {
		done := tt.batch(v2, events.RollingBatchDone, b)
		if len(done.Slots) != 1 || done.Slots[0] != fmt.Sprintf("store-%d", b-1) || done.Report == nil || done.Batches != 3 {
			t.Fatalf("v2 batch %d done: %+v", b, done)
		}
	}
	if err := w.AwaitOK(100, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	w.Stage("v2→v3")
	v3 := tt.release("store", "v3", "--fail-slots", "store-1")
	ev := tt.await(v3, 90*time.Second, events.RolledBack)
	first := tt.batch(v3, events.RollingBatchDone, 1)
	rb := tt.batch(v3, events.RollingRollback, 2)
	if first.Slots[0] != "store-0" || rb.Slots[0] != "store-1" || !strings.Contains(rb.Reason, "verify of batch 2 failed") || !strings.Contains(rb.Reason, "error_rate") {
		t.Fatalf("v3: batch 1 %+v; rollback %+v", first, rb)
	}
	if !strings.Contains(string(ev.Data), "verify of batch 2 failed") {
		t.Fatalf("rolled_back: %s", ev.Data)
	}
	if err := w.AwaitOK(100, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	w.Stop()

	// every slot runs v2 again, each once
	ctx := testkit.Context(t, 10*time.Second)
	kv, err := tt.js.KeyValue(ctx, topology.BucketInstances)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := natsx.Entries(ctx, kv, discovery.ServiceFilter("store"))
	if err != nil {
		t.Fatal(err)
	}
	slots := map[string]string{}
	for _, e := range entries {
		d, err := discovery.Decode(e.Value())
		if err != nil || d.State != discovery.StateUp {
			continue
		}
		if d.Group != "store-v002" || slots[d.Slot] != "" {
			t.Fatalf("after v3's rollback: %s runs %s in %s (slots so far %v)", d.ID, d.Slot, d.Group, slots)
		}
		slots[d.Slot] = d.ID
	}
	if len(slots) != 3 {
		t.Fatalf("after v3's rollback, slots up: %v", slots)
	}
	lost := w.Lost()
	t.Logf("%s; lost: %d", w.Summary(), len(lost))
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged writes lost: %v", len(lost), lost)
	}
	if n := w.Failed("v1→v2"); n > 0 {
		t.Fatalf("%d writes failed during the healthy roll", n)
	}
}

// TestRollingHealthGate: a rolling batch whose new instance dies during
// its health gate fails the gate; the release rolls back with the reason
// and its slot runs the previous version again, with its data.
func TestRollingHealthGate(t *testing.T) {
	tt := newStoreTiers(t)
	st := storeSpec()
	// room to find and kill its instance within the gate on a loaded
	// machine (a race run beside another saw 5 s pass first); the gate
	// ends at the failure, so a longer one costs the test nothing
	st.Strategy.Rolling.HealthGate = spec.Duration(10 * time.Second)
	tt.apply(st)
	w := startWriters(t, tt, 2)
	v2 := tt.release("store", "v2")
	tt.await(v2, 30*time.Second, events.RollingBatchStarted)
	var victim fleet.Instance
	for deadline := time.Now().Add(30 * time.Second); victim.State != discovery.StateUp; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("store-0 never came up in store-v002")
		}
		victim = tt.slotInstance("store-v002", "store-0")
	}
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tt.await(v2, 30*time.Second, events.RolledBack)
	rb := tt.batch(v2, events.RollingRollback, 1)
	if !strings.Contains(rb.Reason, "health gate of batch 1: store-0's instance "+victim.ID) {
		t.Fatalf("rollback: %+v", rb)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if i := tt.slotInstance("store-v001", "store-0"); i.State == discovery.StateUp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("store-0 is not back in store-v001")
		}
	}
	if err := w.AwaitOK(100, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	w.Stop()
	if lost := w.Lost(); len(lost) > 0 {
		t.Fatalf("%d acknowledged writes lost: %v", len(lost), lost)
	}
	t.Log(w.Summary())
}

// batch is the data of release id's event k for batch b.
func (tt *tiers) batch(id string, k events.Kind, b int) events.RollingBatch {
	tt.t.Helper()
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for _, ev := range tt.seen {
		var d events.RollingBatch
		if ev.ReleaseID == id && ev.Type == k.Type() && ev.DecodeData(&d) == nil && d.Batch == b {
			return d
		}
	}
	var story strings.Builder
	for _, ev := range tt.seen {
		if ev.ReleaseID == id {
			story.WriteString("\n  " + ev.Type + " " + string(ev.Data))
		}
	}
	tt.t.Fatalf("release %s: no %s of batch %d; events:%s", id, k.Name, b, story.String())
	return events.RollingBatch{}
}

// slotInstance is the instance of group that runs slot, as the
// provisioner lists it ("" if none).
func (tt *tiers) slotInstance(group, slot string) fleet.Instance {
	tt.t.Helper()
	nc, err := tt.m.Connect("test")
	if err != nil {
		tt.t.Fatal(err)
	}
	defer nc.Close()
	resp, err := nc.Request(natsx.EndpointSubject("provisioner", "list"), []byte("store"), 5*time.Second)
	if err != nil {
		tt.t.Fatal(err)
	}
	var groups []fleet.Group
	if err := json.Unmarshal(resp.Data, &groups); err != nil {
		tt.t.Fatal(err)
	}
	for _, g := range groups {
		for _, i := range g.Instances {
			if g.Spec.Group == group && i.Slot == slot {
				return i
			}
		}
	}
	return fleet.Instance{}
}

// TestRollbackCannotUnwriteASchema: a v2 that writes schema 2 records
// fails its second batch's verify; the roll-back puts store-1 back on v1,
// but v1 cannot read the schema 2 records v2 wrote in store-0's volume: it
// exits at start, the roll-back waits at that slot, and the watchdog raises
// release.store.stuck past the rollback deadline. A roll-back puts code
// back; it never un-writes data (hence expand/contract, in the README).
func TestRollbackCannotUnwriteASchema(t *testing.T) {
	tt := newStoreTiers(t)
	st := storeSpec()
	st.Strategy.Deadlines.Rollback = spec.Duration(time.Second)
	tt.apply(st)
	w := startWriters(t, tt, 2)
	stuck := make(chan events.Stuck, 1)
	nc, err := tt.m.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.Subscribe(events.ReleaseStuck.Subject("store"), func(m *nats.Msg) {
		var s events.Stuck
		if ev, err := events.Decode(m.Data); err == nil && ev.DecodeData(&s) == nil {
			select {
			case stuck <- s:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()
	v2 := tt.release("store", "v2", "--schema", "2", "--fail-slots", "store-1")
	tt.await(v2, 60*time.Second, events.RollingRollback)
	w.Stop() // before store-0 leaves v2 for a v1 that cannot start: its writes would wait out their deadline
	var s events.Stuck
	select {
	case s = <-stuck:
	case <-time.After(60 * time.Second):
		t.Fatal("no release.store.stuck")
	}
	if s.Phase != "rolling_back" || !strings.Contains(s.Reason, "verify of batch 2 failed") {
		t.Fatalf("stuck: %+v", s)
	}
	if i := tt.slotInstance("store-v001", "store-1"); i.State != discovery.StateUp {
		t.Fatalf("store-1 is not back on v1: %+v", i)
	}
	if i := tt.slotInstance("store-v001", "store-0"); i.State == discovery.StateUp {
		t.Fatalf("v1 runs store-0 on a volume holding schema 2 records: %+v", i)
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	for _, ev := range tt.seen {
		if ev.ReleaseID == v2 && ev.Type == events.RolledBack.Type() {
			t.Fatalf("rolled back although v1 cannot read store-0's volume: %s", ev.Data)
		}
	}
}

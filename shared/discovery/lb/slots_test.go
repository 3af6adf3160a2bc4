package lb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/discovery/lb"
	"github.com/redblack/redblack/shared/rolling"
)

// slotInstance serves a stateful slot (its name in every answer) and
// registers it in discovery with the service's slot count.
func (r *rig) slotInstance(group, id string, slot, count int) (addr string, stop func()) {
	r.t.Helper()
	name := rolling.SlotName("api", slot)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		fmt.Fprint(w, name+" "+group)
	}))
	r.t.Cleanup(srv.Close)
	addr = strings.TrimPrefix(srv.URL, "http://")
	e := discovery.Entry{ID: id, Service: "api", Group: group, Address: addr, State: discovery.StateUp, Started: time.Now(), Slot: name, SlotCount: count}
	if _, err := r.instances.Put(r.ctx, discovery.Key("api", group, id), e.Encode()); err != nil {
		r.t.Fatal(err)
	}
	return addr, srv.Close
}

func keyCall(c *lb.Client, key string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://api/kv/"+key, strings.NewReader("v"))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("v")), nil }
	resp, err := c.DoKey(req, key)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), nil
}

// TestKeysGoToTheirSlot: DoKey sends each key to the instance of its slot
// (rolling.SlotOf over the slot count in discovery), whichever group of the
// route runs it; while a slot's instance is gone (replaced in a rolling
// release) a call waits for the new one within its deadline, and fails
// with ErrNoSlot past it.
func TestKeysGoToTheirSlot(t *testing.T) {
	r := newRig(t)
	// slots 0 and 2 in the old group, slot 1 already in the new one
	r.slotInstance("api-v001", "a0", 0, 3)
	_, stop1 := r.slotInstance("api-v001", "a1", 1, 3)
	r.slotInstance("api-v001", "a2", 2, 3)
	r.slotInstance("api-v002", "b1", 1, 3)
	stop1()
	r.instances.Delete(r.ctx, discovery.Key("api", "api-v001", "a1")) // slot 1 left the old group
	r.route(map[string]int{"api-v001": 667, "api-v002": 333})
	c := r.client()
	r.await("the table", func() bool {
		_, err := keyCall(c, "k0", time.Second)
		return err == nil
	})
	for i := range 60 {
		key := fmt.Sprintf("key-%d", i)
		want := rolling.SlotName("api", rolling.SlotOf(key, 3))
		got, err := keyCall(c, key, 5*time.Second)
		if err != nil || !strings.HasPrefix(got, want+" ") {
			t.Fatalf("%s: %q %v; want slot %s", key, got, err, want)
		}
		if want == "api-1" && got != "api-1 api-v002" {
			t.Fatalf("%s went to %q; slot 1 runs in api-v002", key, got)
		}
	}

	// slot 0 is replaced: its old instance goes, the new one comes 300 ms later
	var key0 string
	for i := 0; key0 == ""; i++ {
		if k := fmt.Sprintf("key-%d", i); rolling.SlotOf(k, 3) == 0 {
			key0 = k
		}
	}
	r.instances.Delete(r.ctx, discovery.Key("api", "api-v001", "a0"))
	r.await("slot 0 gone from the table", func() bool {
		_, err := keyCall(c, key0, 50*time.Millisecond)
		return errors.Is(err, lb.ErrNoSlot) && errors.Is(err, context.DeadlineExceeded)
	})
	go func() {
		time.Sleep(300 * time.Millisecond) // the replacement's start, as a rolling batch takes it
		r.slotInstance("api-v002", "b0", 0, 3)
	}()
	start := time.Now()
	got, err := keyCall(c, key0, 10*time.Second)
	if err != nil || got != "api-0 api-v002" {
		t.Fatalf("%s during slot 0's replacement: %q %v", key0, got, err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("answered after %s, before the replacement registered", waited)
	}

	// a slot whose only instance fails is still sent its keys (its
	// failures reach the caller and the samples), ejected or not: the
	// calls do not wait out an ejection
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		http.Error(w, "refused", http.StatusInternalServerError)
	}))
	defer failing.Close()
	r.instances.Delete(r.ctx, discovery.Key("api", "api-v001", "a2"))
	e := discovery.Entry{ID: "b2", Service: "api", Group: "api-v002", Address: strings.TrimPrefix(failing.URL, "http://"), State: discovery.StateUp, Started: time.Now(), Slot: "api-2", SlotCount: 3}
	r.instances.Put(r.ctx, discovery.Key("api", "api-v002", "b2"), e.Encode())
	var key2 string
	for i := 0; key2 == ""; i++ {
		if k := fmt.Sprintf("key-%d", i); rolling.SlotOf(k, 3) == 2 {
			key2 = k
		}
	}
	r.await("slot 2 on the failing instance", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api/kv/"+key2, nil)
		resp, err := c.DoKey(req, key2)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusInternalServerError
	})
	start = time.Now()
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://api/kv/"+key2, nil)
		resp, err := c.DoKey(req, key2)
		cancel()
		if err != nil || resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("a call to the failing slot: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("20 calls to a failing slot took %s: they waited out its ejection", took)
	}

	// a service with no route is refused at once
	start = time.Now()
	req, _ := http.NewRequest(http.MethodGet, "http://nothere/kv/x", nil)
	if _, err := c.DoKey(req, "x"); !errors.Is(err, lb.ErrNoService) || time.Since(start) > time.Second {
		t.Fatalf("a key call to an unknown service: %v after %s", err, time.Since(start))
	}
}

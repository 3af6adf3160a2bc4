package events

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTripEveryKind(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(k.Type(), func(t *testing.T) {
			data := filled(t, k)
			e, err := New("redblack/test", k, "hello", "rel-1", data)
			if err != nil {
				t.Fatal(err)
			}
			b, err := e.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(%s): %v", b, err)
			}
			if got.ID != e.ID || got.Type != k.Type() || got.ReleaseID != "rel-1" || !got.Time.Equal(e.Time) || got.Subject != "hello" {
				t.Fatalf("envelope changed: %+v vs %+v", got, e)
			}
			back, err := got.TypedData()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, data) {
				t.Fatalf("data changed:\n got %#v\nwant %#v", back, data)
			}
			if kk, ok := got.Kind(); !ok || kk != k {
				t.Fatalf("Kind() = %v, %v", kk, ok)
			}
		})
	}
}

// filled returns a pointer to a non-zero value of k's data type.
func filled(t *testing.T, k Kind) any {
	t.Helper()
	v := NewData(k)
	if v == nil {
		t.Fatalf("no data type for %s", k)
	}
	// Fill through JSON from a typed sample so each case sets real fields.
	s := sampleFor(k)
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(v).Elem().IsZero() {
		t.Fatalf("sample of %s is zero", k)
	}
	return v
}

func sampleFor(k Kind) any {
	switch NewData(k).(type) {
	case *Requested:
		return Requested{Service: "hello", Version: "v2", Artifact: Artifact{Command: []string{"hello", "--x"}, Env: map[string]string{"A": "1"}}, RequestedBy: "ci"}
	case *Accepted:
		return Accepted{Service: "hello", Version: "v2", Group: "hello-v002", Sequence: 2, Artifact: Artifact{AMI: "ami-1"}, Previous: "hello-v001"}
	case *Rejected:
		return Rejected{Service: "hello", Reason: "busy", Field: "service", InProgress: "r1"}
	case *CanaryStart:
		return CanaryStart{Service: "hello", Baseline: "b", Canary: "c", Weight: 50}
	case *CanaryResult:
		return CanaryResult{Service: "hello", Canary: "c", Score: 75, Reason: "latency high", Metrics: []MetricReport{{Name: "p99", BaselineSamples: 10, CanarySamples: 11, Low: 1, High: 2, Classification: "High"}}}
	case *Calibration:
		return Calibration{Service: "hello", Passed: true, Closest: 0.2, ClosestMetric: "latency_p99", Duration: time.Minute,
			Report: CanaryResult{Service: "hello", Score: 100, Looks: 4, Confidence: 0.99, DroppedSamples: 2, Metrics: []MetricReport{{Name: "error_rate", Estimate: 0.001, Evidence: 0.1, Peak: 0.2, Classification: "Pass"}}}}
	case *Stuck:
		return Stuck{Service: "hello", Phase: "rolling_back", For: time.Minute, Redriven: 2, Reason: "destroy refused"}
	case *Cluster:
		return Cluster{Service: "hello", Group: "hello-v002", Instances: 3}
	case *TrafficLag:
		return TrafficLag{Service: "hello", Revision: 7, Callers: []string{"c-1"}, Waited: 5 * time.Second}
	case *Traffic:
		return Traffic{Service: "hello", Active: "hello-v002", Previous: "hello-v001", Weights: map[string]int{"hello-v002": 1000}, Revision: 7}
	case *Bake:
		return Bake{Service: "hello", Group: "g", Duration: time.Minute}
	case *Rollback:
		return Rollback{Service: "hello", Group: "g", Reason: "5xx", By: "watchdog"}
	case *RollbackDone:
		return RollbackDone{Service: "hello", Group: "g", Restored: "f", Reason: "5xx"}
	case *Completion:
		return Completion{Service: "hello", Group: "g", Version: "v2"}
	case *RollingBatch:
		return RollingBatch{Service: "store", Group: "store-v002", Previous: "store-v001", Batch: 2, Batches: 3, Slots: []string{"store-1"},
			Took: time.Second, Reason: "verify failed", Report: &CanaryResult{Service: "store", Score: 0}}
	case *ServerGroupCommand:
		return ServerGroupCommand{Service: "hello", Group: "g", Version: "v2", Capacity: 3, Role: "canary"}
	case *InstanceCommand:
		return InstanceCommand{Service: "hello", Group: "g", Instance: "i-1", Reason: "chaos"}
	case *ServerGroup:
		return ServerGroup{Service: "hello", Group: "g", Capacity: 3, Up: 2, Reason: "x"}
	case *Instance:
		return Instance{Service: "hello", Group: "g", Instance: "i", Address: "127.0.0.1:1", State: "up"}
	case *TrafficCommand:
		return TrafficCommand{Service: "hello", Weights: map[string]int{"a": 1}, Group: "g", Reason: "r"}
	case *Chaos:
		return Chaos{Service: "hello", Group: "g", Instance: "i", Leashed: true}
	}
	return nil
}

func TestEveryFlowEventHasAKind(t *testing.T) {
	want := []string{"requested", "accepted", "rejected", "canary.started", "canary.passed", "canary.failed",
		"cluster.ready", "traffic.switched", "traffic.restored", "baked", "rollback.requested", "rolled_back", "completed"}
	for _, name := range want {
		if _, ok := KindOf(TypePrefix + "release." + name); !ok {
			t.Errorf("no kind for release.%s", name)
		}
	}
	if got := CanaryPassed.Subject("hello"); got != "release.hello.canary.passed" {
		t.Errorf("subject = %q", got)
	}
}

func TestDerivedIDDeterministic(t *testing.T) {
	a, again := DerivedID("rel-1", ReleaseAccepted, 0), DerivedID("rel-1", ReleaseAccepted, 0)
	if a != again {
		t.Fatal("DerivedID not deterministic")
	}
	for _, other := range []string{DerivedID("rel-2", ReleaseAccepted, 0), DerivedID("rel-1", ReleaseRejected, 0), DerivedID("rel-1", ReleaseAccepted, 1)} {
		if other == a {
			t.Fatalf("DerivedID collides: %q", a)
		}
	}
	if first, second := NewID(), NewID(); first == second || len(first) != 32 {
		t.Fatalf("NewID gave %q then %q", first, second)
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := map[string]string{
		"empty":        "",
		"spaces":       "   ",
		"not json":     "\x00\x01garbage",
		"array":        "[1,2]",
		"wrong spec":   `{"specversion":"0.3","id":"1","source":"s","type":"t","time":"2026-01-01T00:00:00Z"}`,
		"no id":        `{"specversion":"1.0","source":"s","type":"t","time":"2026-01-01T00:00:00Z"}`,
		"no source":    `{"specversion":"1.0","id":"1","type":"t","time":"2026-01-01T00:00:00Z"}`,
		"no type":      `{"specversion":"1.0","id":"1","source":"s","time":"2026-01-01T00:00:00Z"}`,
		"no time":      `{"specversion":"1.0","id":"1","source":"s","type":"t"}`,
		"content type": `{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2026-01-01T00:00:00Z","datacontenttype":"text/xml"}`,
		"too big":      `{"specversion":"1.0","id":"` + strings.Repeat("x", MaxEventSize) + `"}`,
	}
	for name, in := range cases {
		if _, err := Decode([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Decode = %v, want ErrInvalid", name, err)
		}
	}
}

func TestDecodeDataRefusesUnknownFields(t *testing.T) {
	e, err := New("s", ReleaseRequested, "hello", "", map[string]any{"version": "v1", "colour": "red"})
	if err != nil {
		t.Fatal(err)
	}
	var r Requested
	if err := e.DecodeData(&r); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("DecodeData = %v, want unknown field colour", err)
	}
}

func TestLooksLikeEvent(t *testing.T) {
	if !LooksLikeEvent([]byte(`{"specversion":"1.0"}`)) || LooksLikeEvent([]byte(`{"version":"v1"}`)) || LooksLikeEvent([]byte("x")) {
		t.Fatal("LooksLikeEvent wrong")
	}
}

package e2e_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/spec"
)

// TestGRPCRelease: hello in its gRPC mode (protocol grpc), under gRPC load
// through the router of unary and server-streaming calls. v2, healthy,
// goes through its canary, the switch and the bake with no failed call;
// v3 answers 30 % of its calls UNAVAILABLE, and its canary catches it
// through grpc-status and rolls it back.
func TestGRPCRelease(t *testing.T) {
	svc := fastSpec()
	svc.Protocol = spec.ProtocolGRPC
	p := newPipeline(t, t.TempDir(), svc)
	p.await(p.release("v1", "--grpc"), 60*time.Second, events.ReleaseCompleted)
	load, err := bench.StartGRPCLoad(p.m.HTTP(), "hello", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer load.Stop()
	answered := func(version string, n int64) {
		t.Helper()
		target := load.Version(version) + n
		deadline := time.Now().Add(30 * time.Second)
		for load.Version(version) < target {
			if time.Now().After(deadline) {
				t.Fatalf("%s answered %d of %d more calls in 30 s (load: %s; failed: %s)", version, load.Version(version)-target+n, n, load.Versions(), load.Codes())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	answered("v1", 100)

	v2 := p.release("v2", "--grpc")
	if ev := p.await(v2, 60*time.Second, events.CanaryPassed, events.CanaryFailed); ev.Type != events.CanaryPassed.Type() {
		t.Fatalf("the canary of a healthy gRPC v2 failed: %s", ev.Data)
	}
	p.await(v2, 60*time.Second, events.ReleaseCompleted)
	answered("v2", 100)
	unary, streams := load.OK()
	t.Logf("v1 → v2: %d unary and %d streaming calls ok, %d failed (%s); answered by %s", unary, streams, load.Failed(), load.Codes(), load.Versions())
	if n := load.Failed(); n != 0 || streams == 0 {
		t.Fatalf("%d calls failed during a healthy gRPC release (%s), %d streams ok", n, load.Codes(), streams)
	}

	v3 := p.release("v3", "--grpc", "--error-rate", "0.3")
	failed := p.await(v3, 60*time.Second, events.CanaryFailed, events.CanaryPassed)
	if failed.Type != events.CanaryFailed.Type() {
		t.Fatalf("a gRPC canary answering 30%% UNAVAILABLE passed: %s", failed.Data)
	}
	var res events.CanaryResult
	_ = failed.DecodeData(&res)
	if !strings.Contains(res.Reason, "error_rate High") {
		t.Fatalf("canary report: score %v reason %q", res.Score, res.Reason)
	}
	p.await(v3, 30*time.Second, events.RolledBack)
	during := load.Failed()
	answered("v2", 200)
	t.Logf("v3's canary: %s; %d calls failed (%s): gRPC calls are not rescued", res.Reason, during, load.Codes())
	if load.Codes() != "Unavailable="+strconv.FormatInt(during, 10) || load.Failed() != during {
		t.Fatalf("failed calls %s (%d during v3's canary, %d in all): want only v3's UNAVAILABLE, none after its rollback", load.Codes(), during, load.Failed())
	}
}

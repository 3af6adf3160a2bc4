package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// TestNodeLossInEachPhase runs `redblack up --nodes 3` and, in five
// releases, SIGKILLs the NATS node leading the audit log (RELEASES) the
// moment the release enters canary, launching, switching, baking and
// rolling_back. up restarts the node. Each release still ends as expected
// with every event of its path in the audit log exactly once; a sixth is
// asked for while the stream elects a new leader, and completes. Under load through the
// router throughout, no request fails but the bad canary's own 500s.
func TestNodeLossInEachPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster, five releases and five node deaths")
	}
	u := startUpNodes(t)
	ctx := testkit.Context(t, 6*time.Minute)
	js, kv := u.admin(t, ctx, topology.BucketReleases)
	u.release("v1")
	var mu sync.Mutex
	var fails []string
	load := bench.StartLoad(u.fields["http"], "hello", 2, nil, func(err error, status int) {
		mu.Lock()
		defer mu.Unlock()
		if status != 500 { // 500s are the bad canary's own answers
			fails = append(fails, fmt.Sprintf("%s status %d: %v", time.Now().Format("15:04:05.000"), status, err))
		}
	})
	defer load.Stop()

	healthy := []events.Kind{events.ReleaseAccepted, events.CanaryStarted, events.CanaryPassed, events.ClusterReady, events.TrafficSwitched, events.Baked, events.ReleaseCompleted}
	bad := []events.Kind{events.ReleaseAccepted, events.CanaryStarted, events.CanaryFailed, events.TrafficRestored, events.RolledBack}
	steps := []struct {
		version, flags string
		phase          release.Phase
		want           release.Phase
		path           []events.Kind
	}{
		{"v2", "", release.PhaseCanary, release.PhaseCompleted, healthy},
		{"v3", "", release.PhaseLaunching, release.PhaseCompleted, healthy},
		{"v4", "", release.PhaseSwitching, release.PhaseCompleted, healthy},
		{"v5", "", release.PhaseBaking, release.PhaseCompleted, healthy},
		{"v6", " --error-rate 0.3", release.PhaseRollingBack, release.PhaseRolledBack, bad},
		{"v7", "", "", release.PhaseCompleted, healthy}, // asked for while the audit log elects a leader
	}
	// fatal stops the test with up's log and the audit log, which say where
	// a release stalled
	fatal := func(format string, args ...any) {
		t.Helper()
		_, audit, _ := u.cli("events", "--since", "10m")
		t.Fatalf(format+"\nthe audit log:\n%s\nup's log:\n%s", append(args, audit, u.logs.String())...)
	}
	for _, st := range steps {
		began := time.Now()
		killed := ""
		if st.phase == "" {
			killed = killLeader(t, ctx, u)
			st.phase = "its request"
		}
		code, out, errs := u.cli("release", "hello", "--version", st.version, "--artifact", u.hello+" --version "+st.version+st.flags)
		if code != 0 {
			fatal("release %s: %d %s %s", st.version, code, out, errs)
		}
		asked := time.Since(began)
		// "release <id> requested: …"; the answer of a request asked during
		// an election may come when the release is over
		var id string
		if _, err := fmt.Sscanf(out, "release %s requested:", &id); err != nil {
			t.Fatalf("release %s: %q", st.version, out)
		}
		var end release.Record
		followRecord(t, ctx, kv, id, func(rec release.Record) bool {
			if rec.Phase == st.phase && killed == "" {
				killed = killLeader(t, ctx, u)
			}
			if rec.Phase.Final() {
				end = rec
			}
			return end.ID != ""
		})
		if end.ID == "" {
			fatal("%s (%s) did not end", st.version, id)
		}
		if killed == "" {
			t.Errorf("%s: never saw %s (ended %s)", st.version, st.phase, end.Phase)
		}
		if end.Phase != st.want {
			fatal("%s: ended %s (%s), want %s, with %s killed in %s", st.version, end.Phase, end.Reason, st.want, killed, st.phase)
		}
		counts := auditPath(t, ctx, js, id, st.path)
		for _, k := range st.path {
			if counts[k.Type()] != 1 {
				t.Errorf("%s: %s %d times in the audit log, want once (all: %v)", st.version, k.Name, counts[k.Type()], counts)
			}
		}
		t.Logf("%s: %s killed in %s; ended %s with every event of its path (asked in %s, ended after %s)", st.version, killed, st.phase, end.Phase,
			asked.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
		// the next release starts with every stream led again
		lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		if err := topology.AwaitLeaders(lctx, js); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	ok, failed, _ := load.Stop()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("load: %d ok, %d failed, of which %d not the bad canary's 500s", ok, failed, len(fails))
	if ok == 0 || len(fails) > 0 {
		_, audit, _ := u.cli("events", "--since", "10m")
		t.Errorf("requests failed across the nodes' deaths; the first: %v\nthe audit log:\n%s\nup's log:\n%s", fails[:min(5, len(fails))], audit, u.logs.String())
	}
}

// followRecord passes fn each state of release id's record until fn says
// enough or ctx ends: each update a watcher sees (none is missed, however
// short a phase), and every second the record as read. A watcher made
// while a stream elects a leader can wait for ever for its first answer,
// and one whose node died can fall silent: each attempt at a watcher is
// bounded, and the reads end the follow even if the watcher is silent.
func followRecord(t *testing.T, ctx context.Context, kv jetstream.KeyValue, id string, fn func(release.Record) bool) {
	t.Helper()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates := make(chan jetstream.KeyValueEntry)
	go func() {
		for fctx.Err() == nil {
			made := make(chan jetstream.KeyWatcher, 1)
			go func() {
				w, err := kv.Watch(fctx, release.RecordKey(id))
				if err != nil {
					w = nil
				}
				made <- w
			}()
			var w jetstream.KeyWatcher
			select {
			case w = <-made:
			case <-time.After(5 * time.Second): // the attempt ends with fctx
			}
			if w == nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for e := range w.Updates() {
				if e == nil {
					continue
				}
				select {
				case updates <- e:
				case <-fctx.Done():
					w.Stop()
					return
				}
			}
			return // the watch ended with fctx
		}
	}()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		var rec release.Record
		select {
		case e := <-updates:
			if json.Unmarshal(e.Value(), &rec) != nil {
				continue
			}
		case <-poll.C:
			gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
			r, _, err := (release.Store{KV: kv}).Get(gctx, id)
			gcancel()
			if err != nil {
				continue
			}
			rec = r
		case <-ctx.Done():
			return
		}
		if fn(rec) {
			return
		}
	}
}

// killLeader SIGKILLs the node that leads RELEASES, as the nodes' own
// monitoring (JSZ) names it, and returns its name.
func killLeader(t *testing.T, ctx context.Context, u *upNodes) string {
	t.Helper()
	var err error
	for {
		var leader string
		if leader, err = u.jszLeader(ctx, topology.StreamReleases); err == nil {
			if pid := u.pid(leader); pid > 0 {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				return leader
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("RELEASES has no leader to kill (%v)", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// jszLeader asks each node's monitoring endpoint (/jsz) which node leads
// stream; the first node that knows a leader answers.
func (u *upNodes) jszLeader(ctx context.Context, stream string) (string, error) {
	err := errors.New("no node named a leader")
	for _, m := range strings.Split(u.fields["monitor"], ",") {
		_, url, _ := strings.Cut(m, "/")
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		info, jerr := jsz(rctx, url)
		cancel()
		if jerr != nil {
			err = jerr
			continue
		}
		for _, a := range info.AccountDetails {
			for _, sd := range a.Streams {
				if sd.Name == stream && sd.Cluster != nil && sd.Cluster.Leader != "" {
					return sd.Cluster.Leader, nil
				}
			}
		}
	}
	return "", err
}

// jsz reads a node's JSZ with its accounts' streams.
func jsz(ctx context.Context, monitor string) (*server.JSInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, monitor+"/jsz?accounts=true&streams=true", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/jsz: %s", monitor, resp.Status)
	}
	var info server.JSInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nil, fmt.Errorf("%s/jsz: %w", monitor, err)
	}
	return &info, nil
}

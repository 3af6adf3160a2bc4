package e2e_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/bench"
	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// tiers is a mesh of two services: edge behind the router, which calls api
// through the discovery client on every request.
type tiers struct {
	t    *testing.T
	m    *mesh.Mesh
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	mu   sync.Mutex
	seen []events.Event
	// the artifact of each service (edge's carries its NATS user)
	art map[string]events.Artifact
}

func newTiers(t *testing.T) *tiers {
	tt := connectTiers(t)
	env, secrets, err := tt.m.Tier("edge", []string{"api"})
	if err != nil {
		t.Fatal(err)
	}
	tt.art["edge"] = events.Artifact{Command: []string{hello, "--downstream", "api"}, Env: env, EnvSecrets: secrets}
	tt.art["api"] = events.Artifact{Command: []string{hello}}
	for _, name := range []string{"api", "edge"} {
		svc := fastSpec()
		svc.Name = name
		tt.apply(svc)
	}
	return tt
}

// apply applies a service's spec with its artifact from tt.art.
func (tt *tiers) apply(svc spec.Service) {
	tt.t.Helper()
	a := tt.art[svc.Name]
	svc.Artifact = spec.Artifact{Command: a.Command, Env: a.Env, EnvSecrets: a.EnvSecrets}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := spec.Apply(ctx, tt.kv, svc); err != nil {
		tt.t.Fatal(err)
	}
}

// connectTiers starts a mesh and taps its release events.
func connectTiers(t *testing.T) *tiers {
	tt := &tiers{t: t, m: start(t, t.TempDir()), art: map[string]events.Artifact{}}
	nc, err := tt.m.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	tt.js, _ = jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tt.kv, _ = tt.js.KeyValue(ctx, topology.BucketServices)
	if _, err := nc.Subscribe("release.>", func(m *nats.Msg) {
		if ev, err := events.Decode(m.Data); err == nil {
			tt.mu.Lock()
			tt.seen = append(tt.seen, ev)
			tt.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	return tt
}

// release requests version of service with hello's extra flags.
func (tt *tiers) release(service, version string, flags ...string) string {
	tt.t.Helper()
	// the command only: the spec's env (edge's NATS user) is used
	art := events.Artifact{Command: append(append(append([]string(nil), tt.art[service].Command...), "--version", version), flags...)}
	ev, err := events.New("test", events.ReleaseRequested, service, "", events.Requested{Version: version, Artifact: art})
	if err != nil {
		tt.t.Fatal(err)
	}
	ev.ReleaseID = "r-" + service + "-" + version + "-" + ev.ID[:6]
	b, _ := ev.Encode()
	if _, err := tt.js.Publish(context.Background(), "release."+service+".requested", b); err != nil {
		tt.t.Fatal(err)
	}
	return ev.ReleaseID
}

// await waits for an event of one of kinds for release id.
func (tt *tiers) await(id string, limit time.Duration, kinds ...events.Kind) events.Event {
	tt.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		tt.mu.Lock()
		for _, ev := range tt.seen {
			for _, k := range kinds {
				if ev.ReleaseID == id && ev.Type == k.Type() {
					tt.mu.Unlock()
					return ev
				}
			}
		}
		tt.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	var story strings.Builder
	tt.mu.Lock()
	for _, ev := range tt.seen {
		if ev.ReleaseID == id {
			story.WriteString("\n  " + ev.Type + " " + string(ev.Data))
		}
	}
	tt.mu.Unlock()
	tt.t.Fatalf("release %s: none of %v within %s; events: %s", id, kinds, limit, story.String())
	return events.Event{}
}

// chain asks edge through the router for the chain of versions.
func (tt *tiers) chain() string {
	tt.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+tt.m.HTTP()+"/", nil)
	req.Host = "edge"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tt.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		tt.t.Fatalf("edge answered %d: %s", resp.StatusCode, b)
	}
	return strings.TrimSpace(string(b))
}

// An inner tier is released through discovery: edge's instances call api
// through the discovery client, which publishes api's samples. A canary of
// api with 50 % errors is caught by the judge on those samples alone (api
// has no router in front of it), and a healthy api release is red/black
// in every caller.
func TestInnerTierReleasedThroughDiscovery(t *testing.T) {
	tt := newTiers(t)
	tt.await(tt.release("api", "v1"), 60*time.Second, events.ReleaseCompleted)
	tt.await(tt.release("edge", "v1"), 60*time.Second, events.ReleaseCompleted)
	if got := tt.chain(); got != "edge v1 → api v1" {
		t.Fatalf("chain %q", got)
	}
	var failed sync.Map
	load := bench.StartLoad(tt.m.HTTP(), "edge", 4, nil, func(err error, status int) { failed.Store(time.Now(), status) })
	defer load.Stop()

	bad := tt.release("api", "v2", "--error-rate", "0.5")
	ev := tt.await(bad, 60*time.Second, events.CanaryFailed, events.CanaryPassed)
	var res events.CanaryResult
	if err := ev.DecodeData(&res); err != nil || ev.Type != events.CanaryFailed.Type() || !strings.Contains(res.Reason, "error_rate") {
		t.Fatalf("api's canary with 50%% errors: %s %s", ev.Type, ev.Data)
	}
	tt.await(bad, 30*time.Second, events.RolledBack)

	good := tt.release("api", "v3")
	tt.await(good, 60*time.Second, events.ReleaseCompleted)
	if got := tt.chain(); got != "edge v1 → api v3" {
		t.Fatalf("chain after api v3: %q", got)
	}
	t.Logf("canary of api caught: %s; %d requests served through edge", res.Reason, load.OK())
}

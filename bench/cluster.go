package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/redblack/redblack/deploy/cluster"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/release"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// Shape is the figures of one shape of the mesh.
type Shape struct {
	// PubConsume is publish→consume on the FLEET stream (R1 embedded, R3
	// on the cluster).
	PubConsume Latencies
	// Release is a healthy release, request → completed, of which
	// Configured is the canary's and the bake's durations.
	Release, Configured time.Duration
}

// ClusterResult is `bench cluster`: the one-process embedded mesh beside
// `up --nodes 3`, and the cluster's recovery from the death of the node
// leading the audit log.
type ClusterResult struct {
	Embedded, Cluster Shape
	// LeaderNode is the node killed; Recovered is its SIGKILL → the audit
	// log accepting a write again (a new leader elected); Settled is the
	// SIGKILL → every stream and bucket with a leader; Resumed is the
	// SIGKILL → the next release's acceptance.
	LeaderNode                  string
	Recovered, Settled, Resumed time.Duration
	ReleaseAfterTheKill         time.Duration
	// Stalled says how the release after the kill did not complete ("" if
	// it did).
	Stalled string
	// Handover is the SIGKILL of the canary copy judging a release (two
	// copies run) → the other copy holding the judge's lease, and
	// ReleaseWithHandover that release, request → completed.
	Handover, ReleaseWithHandover time.Duration
	// HandedTo is the process that took the lease over.
	HandedTo string
}

// clusterSpec is hello with a 2 s canary and a 2 s bake.
func clusterSpec(hello string) spec.Service {
	return NewSpec("hello", "bench", hello).HealthEvery(250 * time.Millisecond).MinSamples(20).Build()
}

// ClusterRun measures both shapes in one run: n publish→consume round trips
// and a healthy release under load on each, then the SIGKILL of the
// cluster's RELEASES leader.
func ClusterRun(self, dir, hello string, n int, progress func(string)) (ClusterResult, error) {
	var r ClusterResult
	progress("embedded: one process, R1")
	m, nc, js, err := startLoopback(filepath.Join(dir, "embedded"), zerolog.Nop())
	if err != nil {
		return r, err
	}
	cnc, err := m.Connect("bench-consumer")
	if err == nil {
		r.Embedded, err = measureShape(nc, js, cnc, m.HTTP(), hello, n)
	}
	m.Stop()
	if err != nil {
		return r, fmt.Errorf("embedded: %w", err)
	}
	progress("cluster: up --nodes 3, R3, each service its own process")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Self: self, DataDir: filepath.Join(dir, "cluster"), Nodes: 3, Copies: 2, Host: "127.0.0.1", HTTP: "127.0.0.1:0",
		Out: io.Discard, Log: zerolog.Nop(), LogLevel: "error"})
	if err != nil {
		return r, err
	}
	defer c.Stop()
	dial := func(name string) (*nats.Conn, error) {
		return nats.Connect(c.URLs(), nats.UserCredentials(c.AdminCreds()), nats.Name(name), nats.MaxReconnects(-1))
	}
	if nc, err = dial("bench"); err != nil {
		return r, err
	}
	defer nc.Close()
	if cnc, err = dial("bench-consumer"); err != nil {
		return r, err
	}
	defer cnc.Close()
	js, _ = jetstream.New(nc)
	if r.Cluster, err = measureShape(nc, js, cnc, c.HTTP(), hello, n); err != nil {
		return r, fmt.Errorf("cluster: %w", err)
	}
	progress("cluster: SIGKILL of the node leading RELEASES, under load")
	load := StartLoad(c.HTTP(), "hello", 2, nil, nil)
	defer load.Stop()
	s, err := js.Stream(ctx, topology.StreamReleases)
	if err != nil {
		return r, err
	}
	leader := s.CachedInfo().Cluster.Leader
	pid := 0
	for _, node := range c.Nodes() {
		if node.Name == leader {
			pid = node.Pid
		}
	}
	if pid == 0 {
		return r, fmt.Errorf("no pid for the RELEASES leader %q", leader)
	}
	r.LeaderNode = leader
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return r, err
	}
	// writes to the audit log, one at a time, until one is acknowledged
	for i := 0; ; i++ {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := js.Publish(pctx, "release.bench.probe", []byte("{}"), jetstream.WithMsgID("probe-"+strconv.Itoa(i)))
		pcancel()
		if err == nil {
			r.Recovered = time.Since(killed)
			break
		}
		if ctx.Err() != nil {
			return r, fmt.Errorf("the audit log took no write after its leader died: %w", err)
		}
	}
	// every stream and bucket led again
	if err := topology.AwaitLeaders(ctx, js); err != nil {
		return r, fmt.Errorf("after the kill: %w", err)
	}
	r.Settled = time.Since(killed)
	start := time.Now()
	id, err := releaseOnce(ctx, nc, js, hello, "v9", func() { r.Resumed = time.Since(killed) })
	if err != nil {
		// a finding, not a failure of the bench: printed with the rest
		r.Stalled = fmt.Sprintf("release %s after the kill: %v", id, err)
		return r, nil
	}
	r.ReleaseAfterTheKill = time.Since(start)
	progress("cluster: SIGKILL of the canary copy judging a release")
	return r, handover(ctx, c, nc, js, hello, &r)
}

// handover asks for a release, SIGKILLs the canary copy holding its judge's
// lease as soon as one does, and measures until the other copy holds it
// and until the release completes.
func handover(ctx context.Context, c *cluster.Cluster, nc *nats.Conn, js jetstream.JetStream, hello string, r *ClusterResult) error {
	kv, err := js.KeyValue(ctx, topology.BucketReleases)
	if err != nil {
		return err
	}
	start := time.Now()
	done := make(chan error, 1)
	ids := make(chan string, 1)
	go func() {
		_, err := releaseOnce(ctx, nc, js, hello, "v10", nil, func(id string) { ids <- id })
		done <- err
	}()
	var id string
	select {
	case id = <-ids:
	case err := <-done:
		return fmt.Errorf("handover release: %v", err)
	}
	key := release.LeaseKey(topology.DurableCanaryPhase, id)
	holder := func() (release.LeaseHolder, error) {
		var h release.LeaseHolder
		e, err := kv.Get(ctx, key)
		if err == nil {
			err = json.Unmarshal(e.Value(), &h)
		}
		return h, err
	}
	var victim release.LeaseHolder
	for victim.Owner == "" {
		if victim, err = holder(); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("no canary copy took the lease of %s", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	pid := release.OwnerPid(victim.Owner)
	if pid <= 0 {
		return fmt.Errorf("lease owner %q names no pid", victim.Owner)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	for {
		h, err := holder()
		if err == nil && h.Owner != victim.Owner && release.OwnerPid(h.Owner) != pid {
			r.Handover, r.HandedTo = time.Since(killed), h.Owner
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("the lease of %s stayed with %s", id, victim.Owner)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := <-done; err != nil {
		return fmt.Errorf("the release after the handover: %w", err)
	}
	r.ReleaseWithHandover = time.Since(start)
	return nil
}

// measureShape applies the spec, releases v1, then measures n
// publish→consume round trips and a healthy v2 under load.
func measureShape(nc *nats.Conn, js jetstream.JetStream, cnc *nats.Conn, http, hello string, n int) (Shape, error) {
	var sh Shape
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, topology.BucketServices)
	if err != nil {
		return sh, err
	}
	svc := clusterSpec(hello)
	if _, err := spec.Apply(ctx, kv, svc); err != nil {
		return sh, err
	}
	if id, err := releaseOnce(ctx, nc, js, hello, "v1", nil); err != nil {
		return sh, fmt.Errorf("v1 %s: %w", id, err)
	}
	cjs, _ := jetstream.New(cnc)
	if sh.PubConsume, err = publishConsume(ctx, js, cjs, n); err != nil {
		return sh, err
	}
	load := StartLoad(http, "hello", 2, nil, nil)
	defer load.Stop()
	start := time.Now()
	if id, err := releaseOnce(ctx, nc, js, hello, "v2", nil); err != nil {
		return sh, fmt.Errorf("v2 %s: %w", id, err)
	}
	sh.Release, sh.Configured = time.Since(start), svc.Strategy.Canary.Duration.D()+svc.Strategy.Bake.Duration.D()
	return sh, nil
}

// releaseOnce requests version and waits for it to complete; accepted, if
// set, is called when the intake accepts it, and requested with its id once
// it is asked for.
func releaseOnce(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, hello, version string, accepted func(), requested ...func(id string)) (string, error) {
	tap, err := nc.SubscribeSync("release.hello.>")
	if err != nil {
		return "", err
	}
	defer tap.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return "", err
	}
	id, err := requestHello(ctx, js, "bench", hello, version)
	if err != nil {
		return id, err
	}
	for _, f := range requested {
		f(id)
	}
	last := "none"
	for {
		m, err := tap.NextMsg(2 * time.Minute)
		if err != nil {
			return id, fmt.Errorf("%w waiting 2 min after its last event (%s)", err, last)
		}
		ev, err := events.Decode(m.Data)
		if err != nil || ev.ReleaseID != id {
			continue
		}
		last = ev.Type
		switch ev.Type {
		case events.ReleaseAccepted.Type():
			if accepted != nil {
				accepted()
			}
		case events.ReleaseCompleted.Type():
			return id, nil
		case events.RolledBack.Type(), events.ReleaseRejected.Type(), events.ReleaseAborted.Type():
			return id, fmt.Errorf("ended %s: %s", ev.Type, ev.Data)
		}
	}
}

// publishConsume publishes n messages one at a time to FLEET and measures
// until a durable consumer on another connection gets each one.
func publishConsume(ctx context.Context, js, cjs jetstream.JetStream, n int) (Latencies, error) {
	got := make(chan time.Duration, 1)
	durable := "bench-" + events.NewID()[:6]
	c, err := natsx.Consume(ctx, cjs, natsx.ConsumerSpec{Stream: topology.StreamFleet, Durable: durable, FilterSubjects: []string{"fleet.bench.>"}},
		func(ctx context.Context, msg jetstream.Msg) error {
			got <- time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(msg.Data()))))
			return nil
		}, logging.Nop())
	if err != nil {
		return Latencies{}, err
	}
	defer c.Stop()
	lat := make([]time.Duration, 0, n)
	buf := make([]byte, 8)
	for i := range n {
		binary.BigEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.Publish(pctx, "fleet.bench.tick", buf, jetstream.WithMsgID(durable+"-"+strconv.Itoa(i)))
		cancel()
		if err != nil {
			return Latencies{}, err
		}
		select {
		case d := <-got:
			lat = append(lat, d)
		case <-time.After(5 * time.Second):
			return Latencies{}, fmt.Errorf("message %d not consumed in 5s", i)
		}
	}
	return summarise(lat), nil
}

// clusterBench is `bench cluster`.
func clusterBench() Entry {
	var n int
	return Entry{
		Name:     "cluster",
		Short:    "the one-process embedded mesh beside up --nodes 3 --copies 2 (R3, each service its own process): publish→consume, a release, a node's death, a copy's death",
		Flags:    func(f *pflag.FlagSet) { f.IntVar(&n, "n", 1000, "publish→consume round trips per shape") },
		Examples: Hello,
		Run: func(_ context.Context, env Env, _ []string) error {
			w := env.Work
			r, err := ClusterRun(env.Self, w.Dir, w.Hello, n, env.Progress)
			if err != nil {
				return err
			}
			ms := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
			ds := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
			tab := table(env.Out)
			defer tab.Flush()
			row(tab, "figure", "embedded (1 process, R1)", "cluster (3 nodes, R3, 9 processes: --copies 2)", "target")
			row(tab, fmt.Sprintf("publish→consume p50 / p99 (n=%d)", n), ms(r.Embedded.PubConsume.P50)+" / "+ms(r.Embedded.PubConsume.P99),
				ms(r.Cluster.PubConsume.P50)+" / "+ms(r.Cluster.PubConsume.P99), "p99 < 5ms embedded")
			row(tab, fmt.Sprintf("healthy release, request → completed (%s configured)", r.Embedded.Configured), ds(r.Embedded.Release), ds(r.Cluster.Release), "-")
			row(tab, "  of which control plane and boots (beyond the configured)", ds(r.Embedded.Release-r.Embedded.Configured), ds(r.Cluster.Release-r.Cluster.Configured), "< 1s")
			row(tab, fmt.Sprintf("SIGKILL of the RELEASES leader (%s) → the audit log takes a write", r.LeaderNode), "-", ds(r.Recovered), "-")
			row(tab, "SIGKILL → every stream and bucket led again", "-", ds(r.Settled), "-")
			row(tab, "SIGKILL → the next release accepted", "-", ds(r.Resumed), "-")
			if r.Stalled != "" {
				row(tab, "that release", "-", "STALLED: "+r.Stalled, "completes")
				return nil
			}
			row(tab, "that release, request → completed", "-", ds(r.ReleaseAfterTheKill), "-")
			row(tab, "SIGKILL of the canary copy judging a release → the other holds its lease", "-", ds(r.Handover), "< 5s (the ack wait)")
			row(tab, "that release, request → completed", "-", ds(r.ReleaseWithHandover), "-")
			return nil
		},
	}
}

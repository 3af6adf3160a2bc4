// Package bench measures the backbone: publish→consume latency through the
// embedded server, intake decisions per second, and the cold start and idle
// memory of `redblack up`. Each function returns figures; the CLI prints them.
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/redblack/redblack/services/canary"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// Latencies summarises a sample of durations.
type Latencies struct {
	N             int
	P50, P99, Max time.Duration
}

func summarise(d []time.Duration) Latencies {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return Latencies{N: len(d), P50: at(0.50), P99: at(0.99), Max: d[len(d)-1]}
}

// server starts an embedded server in dir with the topology ensured.
func server(dir string) (*natsx.Embedded, *nats.Conn, jetstream.JetStream, error) {
	e, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		return nil, nil, nil, err
	}
	nc, err := e.Connect("bench", nil)
	if err != nil {
		e.Shutdown()
		return nil, nil, nil, err
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := topology.Ensure(ctx, js, topology.DefaultOptions()); err != nil {
		nc.Close()
		e.Shutdown()
		return nil, nil, nil, err
	}
	return e, nc, js, nil
}

// PublishConsume publishes n messages one at a time to the FLEET stream (file
// storage, msg id on each) and measures until a durable consumer's handler
// gets each one. The consumer connects over loopback TCP, as another process.
func PublishConsume(dir string, n int) (Latencies, error) {
	e, nc, js, err := server(dir)
	if err != nil {
		return Latencies{}, err
	}
	defer e.Shutdown()
	defer nc.Close()
	cnc, err := nats.Connect(e.ClientURL())
	if err != nil {
		return Latencies{}, err
	}
	defer cnc.Close()
	cjs, _ := jetstream.New(cnc)
	return publishConsume(context.Background(), js, cjs, n)
}

// Intake measures intake decisions per second: requests are published as
// fast as the server acks them and the clock stops at the last decision.
type Intake struct {
	Requests, Accepted, Rejected int
	Elapsed                      time.Duration
}

// PerSecond is decisions per second.
func (r Intake) PerSecond() float64 { return float64(r.Accepted+r.Rejected) / r.Elapsed.Seconds() }

// IntakeRate runs the canary service and sends n requests spread over
// services services (1 → all but the first are rejected as in progress;
// n → all are accepted: the heavier path, lock + counter + record).
func IntakeRate(dir string, n, services int) (Intake, error) {
	e, nc, js, err := server(dir)
	if err != nil {
		return Intake{}, err
	}
	defer e.Shutdown()
	defer nc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kv, err := js.KeyValue(ctx, topology.BucketServices)
	if err != nil {
		return Intake{}, err
	}
	for i := range services {
		s := spec.Service{Name: fmt.Sprintf("svc%d", i), Owner: "bench", Capacity: 1, Artifact: spec.Artifact{Command: []string{"true"}}}
		if _, err := spec.Apply(ctx, kv, s); err != nil {
			return Intake{}, err
		}
	}
	snc, err := e.Connect("canary", nil)
	if err != nil {
		return Intake{}, err
	}
	defer snc.Close()
	done := make(chan error, 1)
	go func() { done <- canary.New(canary.DefaultConfig(), snc, logging.Nop()).Run(ctx) }()
	decisions := make(chan string, n)
	sub, err := nc.Subscribe("release.*.*", func(m *nats.Msg) {
		if strings.HasSuffix(m.Subject, ".accepted") || strings.HasSuffix(m.Subject, ".rejected") {
			decisions <- m.Subject
		}
	})
	if err != nil {
		return Intake{}, err
	}
	defer sub.Unsubscribe()
	if err := awaitPing(nc, "redblack-canary"); err != nil {
		return Intake{}, err
	}
	start := time.Now()
	for i := range n {
		body := fmt.Appendf(nil, `{"version":"v%d"}`, i)
		if _, err := js.PublishAsync(fmt.Sprintf("release.svc%d.requested", i%services), body); err != nil {
			return Intake{}, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		return Intake{}, fmt.Errorf("publishes not acked in 30s")
	}
	r := Intake{Requests: n}
	timeout := time.After(60 * time.Second)
	for r.Accepted+r.Rejected < n {
		select {
		case s := <-decisions:
			if strings.HasSuffix(s, ".accepted") {
				r.Accepted++
			} else {
				r.Rejected++
			}
		case <-timeout:
			return r, fmt.Errorf("only %d of %d decisions in 60s", r.Accepted+r.Rejected, n)
		}
	}
	r.Elapsed = time.Since(start)
	cancel()
	<-done
	return r, nil
}

func awaitPing(nc *nats.Conn, service string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := nc.Request("$SRV.PING."+service, nil, 200*time.Millisecond); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer a ping in 10s", service)
		}
	}
}

// Up is the cold start and idle memory of `redblack up`.
type Up struct {
	Ready   time.Duration // from exec to the "redblack ready" line
	IdleRSS int64         // bytes, after idle seconds of idling: up and its data plane process
	Idle    time.Duration
}

// UpProcess runs `<self> up` as a child process with a fresh data dir and
// free ports, times it to "redblack ready", lets it idle, reads its and its
// data plane's resident memory from /proc, and stops it with SIGTERM.
func UpProcess(self, dir string, idle time.Duration) (Up, error) {
	var r Up
	start := time.Now()
	u, err := startUp(self, dir, "127.0.0.1:0", "127.0.0.1:0", os.Stderr)
	if err != nil {
		return r, err
	}
	defer u.stop()
	r.Ready = time.Since(start)
	time.Sleep(idle) // idle is what is measured
	r.Idle = idle
	rss, err := rssOf(u.cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	if pid, _, err := dataPlaneOf(u.ready); err == nil {
		plane, err := rssOf(pid)
		if err != nil {
			return r, err
		}
		rss += plane
	}
	r.IdleRSS = rss
	return r, nil
}

// rssOf reads VmRSS of a process from /proc.
func rssOf(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// backboneBench is `bench backbone`.
func backboneBench() Entry {
	var n int
	var idle time.Duration
	return Entry{
		Name:  "backbone",
		Short: "publish→consume latency, intake decisions/s, `redblack up` cold start and idle RSS",
		Flags: func(f *pflag.FlagSet) {
			f.IntVar(&n, "n", 2000, "messages and requests per measurement")
			f.DurationVar(&idle, "idle", 5*time.Second, "how long `redblack up` idles before its RSS is read")
		},
		Run: func(_ context.Context, env Env, _ []string) error {
			dir, err := os.MkdirTemp("", "redblack-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			sub := func(name string) string { return filepath.Join(dir, name) }
			tab := table(env.Out)
			defer tab.Flush()
			row(tab, "figure", "measured", "target")
			lat, err := PublishConsume(sub("latency"), n)
			if err != nil {
				return fmt.Errorf("publish→consume: %w", err)
			}
			row(tab, fmt.Sprintf("publish→consume p50 / p99 (n=%d)", lat.N),
				fmt.Sprintf("%s / %s", lat.P50.Round(time.Microsecond), lat.P99.Round(time.Microsecond)), "p99 < 5ms")
			for _, c := range []struct {
				label    string
				services int
			}{{"intake, all accepted (n services)", n}, {"intake, one service (1 accepted, rest busy)", 1}} {
				r, err := IntakeRate(sub(fmt.Sprintf("intake%d", c.services)), n, c.services)
				if err != nil {
					return fmt.Errorf("intake: %w", err)
				}
				row(tab, fmt.Sprintf("%s, n=%d", c.label, n), fmt.Sprintf("%.0f decisions/s", r.PerSecond()), "≥ 2,000/s")
			}
			up, err := UpProcess(env.Self, sub("up"), idle)
			if err != nil {
				return fmt.Errorf("up: %w", err)
			}
			row(tab, "redblack up: exec to ready", up.Ready.Round(time.Millisecond), "< 2s")
			row(tab, fmt.Sprintf("redblack up: RSS after %s idle (with its data plane process)", up.Idle), fmt.Sprintf("%.1f MB", float64(up.IdleRSS)/1e6), "< 150 MB")
			return nil
		},
	}
}

package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/redblack/redblack/deploy/bench"
	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/logging"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

func (a *app) demoCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the mesh in a temp dir and show what redblack does today, end to end",
		Long: `Starts the mesh in a temporary directory, applies a "hello" spec, and
drives release intake the way teams and auditors would: a release is accepted
(lock taken, server group named), a concurrent one is refused, a malformed one is
refused with the field at fault, and the audit trail shows all of it.

It says plainly which parts of the pipeline are not built yet. It exits 0 only
when every outcome is the expected one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.demo(keep) },
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the temp dir (JetStream files) afterwards")
	return cmd
}

// check is one expected outcome of the demo.
type check struct {
	what, want, got string
}

func (a *app) demo(keep bool) error {
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(a.out, "[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	dir, err := os.MkdirTemp("", "redblack-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	step("building examples/hello")
	hello, err := buildHello(dir)
	if err != nil {
		return err
	}
	cfg := mesh.DefaultConfig()
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = dir, "127.0.0.1:0", "127.0.0.1:0"
	cfg.Log = logging.New(a.err, "", "warn")
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		return err
	}
	defer m.Stop()
	step("mesh up: embedded NATS with JetStream at %s, services %s", m.URL(), strings.Join(mesh.ServiceNames, ", "))
	a.conn.URL = m.URL()
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.close()

	ctx, cancel := timeout(30 * time.Second)
	defer cancel()
	kv, err := c.kv(ctx, topology.BucketServices)
	if err != nil {
		return err
	}
	hs := spec.Service{Name: "hello", Owner: "team-hello", Capacity: 3, Artifact: spec.Artifact{Command: []string{hello}}}
	res, err := spec.Apply(ctx, kv, hs)
	if err != nil {
		return err
	}
	step("service hello %s (capacity 3, artifact %s)", res, hello)

	var checks []check
	decide := func(what, want, version string, art events.Artifact) events.Event {
		id, seq, err := c.request(ctx, "hello", version, art)
		if err != nil {
			checks = append(checks, check{what, want, err.Error()})
			return events.Event{}
		}
		ev, err := c.decision("hello", id, seq, 10*time.Second)
		got := shortType(ev.Type)
		if err != nil {
			got = err.Error()
		}
		step("%s → %s: %s", what, got, describe(ev))
		checks = append(checks, check{what, want, got})
		return ev
	}
	decide("release hello v1", "release.accepted", "v1", events.Artifact{Command: []string{hello, "--version", "v1"}})
	decide("release hello v2 while v1 is in flight", "release.rejected", "v2", events.Artifact{})
	// the bare body a team sends with `nats pub`, with a typo in a field name
	ack, err := c.js.Publish(ctx, "release.hello.requested", []byte(`{"version":"v3","artefact":{}}`))
	if err != nil {
		return err
	}
	ev, err := c.decision("hello", fmt.Sprintf("req-%d", ack.Sequence), ack.Sequence, 10*time.Second)
	got := shortType(ev.Type)
	if err != nil {
		got = err.Error()
	}
	step("bare request {\"version\":\"v3\",\"artefact\":{}} → %s: %s", got, describe(ev))
	checks = append(checks, check{"bare request with a misspelt field", "release.rejected", got})

	// the fleet: what the pipeline will do on accepted, done by hand here
	tap, err := c.nc.SubscribeSync("fleet.hello.>")
	if err != nil {
		return err
	}
	fleetStep := func(what, want string, k events.Kind, cmd any, until events.Kind, skip string) {
		group := "hello-v001"
		switch c := cmd.(type) {
		case events.ServerGroupCommand:
			group = c.Group
		case events.InstanceCommand:
			group = c.Group
		}
		t0 := time.Now()
		ev, err := events.New("redblack/demo", k, "hello", "", cmd)
		if err == nil {
			_, err = natsx.Publish(ctx, c.js, k.Subject("hello"), ev)
		}
		got := ""
		if err == nil {
			var out events.Event
			out, err = bench.Await(tap, until, group, skip, 30*time.Second)
			got = shortType(out.Type)
			if err == nil {
				step("%s → %s in %s: %s", what, got, time.Since(t0).Round(time.Millisecond), describe(out))
			}
		}
		if err != nil {
			got = err.Error()
			step("%s → %s", what, got)
		}
		checks = append(checks, check{what, want, got})
	}
	fleetStep("create hello-v001 with 3 instances", "fleet.servergroup.ready", events.ServerGroupCreate,
		events.ServerGroupCommand{Service: "hello", Group: "hello-v001", Version: "v1", Capacity: 3, Artifact: events.Artifact{Command: []string{hello, "--version", "v1"}}},
		events.ServerGroupReady, "")
	if g, err := bench.List(c.nc, "hello-v001"); err == nil && len(g.Instances) > 0 {
		victim := g.Instances[0].ID
		fleetStep("terminate instance "+victim+" (as Chaos Monkey will)", "fleet.instance.up", events.InstanceTerminate,
			events.InstanceCommand{Service: "hello", Group: "hello-v001", Instance: victim, Reason: "demo"}, events.InstanceUp, victim)
	}
	fmt.Fprintln(a.out, "\nfleet (redblack fleet ls hello):")
	if g, err := bench.List(c.nc, "hello-v001"); err == nil {
		for _, i := range g.Instances {
			fmt.Fprintf(a.out, "  %s  %-8s %s\n", i.ID, i.State, i.Address)
		}
	}

	// red/black by hand: the router moves all traffic at once, under load
	trafficStep := func(what, want string, k events.Kind, group string) {
		t0 := time.Now()
		got := ""
		ev, err := events.New("redblack/demo", k, "hello", "", events.TrafficCommand{Service: "hello", Group: group})
		var answers *nats.Subscription
		if err == nil {
			answers, err = c.nc.SubscribeSync("*.hello.traffic.*")
		}
		if err == nil {
			defer answers.Unsubscribe()
			_, err = natsx.Publish(ctx, c.js, k.Subject("hello"), ev)
		}
		if err == nil {
			var out events.Event
			out, err = answerTo(answers, ev.ID)
			got = shortType(out.Type)
			if err == nil {
				step("%s → %s in %s: %s", what, got, time.Since(t0).Round(time.Millisecond), describe(out))
			}
		}
		if err != nil {
			got = err.Error()
			step("%s → %s", what, got)
		}
		checks = append(checks, check{what, want, got})
	}
	trafficStep("switch all traffic to hello-v001", "release.traffic.switched", events.TrafficSwitch, "hello-v001")
	fleetStep("create hello-v002 (version v2) beside it", "fleet.servergroup.ready", events.ServerGroupCreate,
		events.ServerGroupCommand{Service: "hello", Group: "hello-v002", Version: "v2", Capacity: 3, Artifact: events.Artifact{Command: []string{hello, "--version", "v2"}}},
		events.ServerGroupReady, "")
	load := bench.StartLoad(m.HTTP(), "hello", 4, nil, nil)
	trafficStep("switch all traffic to hello-v002 under load", "release.traffic.switched", events.TrafficSwitch, "hello-v002")
	time.Sleep(500 * time.Millisecond) // let the load run on the new group: what is shown
	trafficStep("restore hello-v001 (a rollback) under load", "release.traffic.restored", events.TrafficRestore, "")
	time.Sleep(500 * time.Millisecond)
	served, lost, versions := load.Stop()
	step("load through the router (http://%s, Host: hello): %d requests, %d failed, versions seen %v", m.HTTP(), served+lost, lost, versions)
	checks = append(checks, check{"requests failed during the switch and the rollback", "0", fmt.Sprint(lost)})
	for _, g := range []string{"hello-v002", "hello-v001"} {
		fleetStep("destroy "+g, "fleet.servergroup.destroyed", events.ServerGroupDestroy,
			events.ServerGroupCommand{Service: "hello", Group: g}, events.ServerGroupDestroyed, "")
	}
	fmt.Fprintln(a.out, "\naudit trail (redblack events --service hello):")
	p := &eventPrinter{a: a}
	if err := c.tail(ctx, topology.StreamReleases, []string{"release.hello.>"}, from{}, false, p.add); err != nil {
		return err
	}
	p.flush()

	fmt.Fprintln(a.out, "\nnot built yet, so v1 stays in phase \"accepted\" and the groups and traffic above were driven by hand:")
	for _, s := range []string{
		"canary judge, bake, promote and rollback (release pipeline issue)",
		"Chaos Monkey (chaos issue)",
	} {
		fmt.Fprintln(a.out, "  -", s)
	}
	fmt.Fprintln(a.out)
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tEXPECTED\tGOT\tOK")
	failed := 0
	for _, ch := range checks {
		ok := ch.got == ch.want
		if !ok {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", ch.what, ch.want, ch.got, ok)
	}
	tw.Flush()
	if failed > 0 {
		return exitCode{code: 1, msg: fmt.Sprintf("demo: %d of %d outcomes unexpected", failed, len(checks))}
	}
	fmt.Fprintf(a.out, "demo: all %d outcomes as expected in %.1fs\n", len(checks), time.Since(start).Seconds())
	return nil
}

// helloPackage is the demo application.
const helloPackage = "github.com/redblack/redblack/examples/hello"

// buildHello builds examples/hello into dir with the go tool.
func buildHello(dir string) (string, error) {
	hello := filepath.Join(dir, "hello")
	if out, err := exec.Command("go", "build", "-o", hello, helloPackage).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s (run from the repository, with Go installed): %v\n%s", helloPackage, err, out)
	}
	return hello, nil
}

// answerTo waits on sub for the event derived from command id.
func answerTo(sub *nats.Subscription, id string) (events.Event, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			return events.Event{}, fmt.Errorf("no answer: %w", err)
		}
		if ev, err := events.Decode(m.Data); err == nil && strings.HasPrefix(ev.ID, id+":") {
			return ev, nil
		}
	}
}

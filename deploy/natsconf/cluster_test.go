package natsconf_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/deploy/natsconf"
	"github.com/redblack/redblack/shared/auth"
	"github.com/redblack/redblack/shared/testkit"
	"github.com/redblack/redblack/shared/topology"
)

// freePorts returns n ports free on loopback now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// startCluster starts three nats-server nodes from the files natsconf
// writes and waits until JetStream answers with a meta leader. The ports
// are free when picked, but the other packages' tests pick ports too: a
// node that finds its port taken exits saying so, and the cluster is
// started again on new ports (3 tries). Any other exit fails the test with
// every node's log.
func startCluster(ctx context.Context, t *testing.T, bin, dir, accounts, adminPath string, logs *testkit.SyncBuffer) (natsconf.Plan, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	for try := 1; ; try++ {
		ports := freePorts(t, 9)
		p := natsconf.Plan{Cluster: natsconf.DefaultCluster, Host: "127.0.0.1"}
		for i := range 3 {
			name := fmt.Sprintf("n%d", i+1)
			p.Nodes = append(p.Nodes, natsconf.Node{Name: name, Client: ports[i], Route: ports[3+i], Monitor: ports[6+i], Store: filepath.Join(dir, fmt.Sprintf("store%d", try), name)})
		}
		paths, err := natsconf.Write(filepath.Join(dir, fmt.Sprintf("nats%d", try)), p, accounts)
		if err != nil {
			t.Fatal(err)
		}
		var nodes []*testkit.Process
		for _, path := range paths {
			nodes = append(nodes, testkit.StartProcess(t, logs, filepath.Join(bin, "nats-server"), "-c", path))
		}
		nc, err := nats.Connect(p.URLs(), nats.UserCredentials(adminPath), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		exited := func() bool {
			for _, n := range nodes {
				select {
				case <-n.Exited:
					return true
				default:
				}
			}
			return false
		}
		// the cluster is up when JetStream answers with a meta leader; each
		// ask has its own short deadline: a request sent before any meta
		// leader gets no answer at all, and once held the whole 2 minutes
		for {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.AccountInfo(actx)
			cancel()
			if err == nil {
				return p, nc, js
			}
			if exited() {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the cluster never formed:\n%s", logs.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
		nc.Close()
		for _, n := range nodes {
			n.Cmd.Process.Kill()
			<-n.Exited
		}
		if try == 3 || !strings.Contains(logs.String(), "address already in use") {
			t.Fatalf("a node exited (try %d):\n%s", try, logs.String())
		}
		t.Logf("try %d: a port was taken before its node listened; again on new ports", try)
	}
}

// TestServicesOnAThreeNodeCluster runs the stock nats-server (built from the
// module redblack uses) as three processes from the files `redblack nats
// config` writes, pre-creates the audit log at R3 with a year's retention,
// reconciles the topology as the admin (`redblack topology ensure`): the
// rest is created at the cluster's replicas (R3), and nothing the operator
// set shrank; then the five services, each as its own process with its own
// creds, start on it and register.
func TestServicesOnAThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and the five services")
	}
	bin := t.TempDir()
	pkgs := []string{"github.com/nats-io/nats-server/v2"}
	for _, s := range mesh.ServiceNames {
		pkgs = append(pkgs, "github.com/redblack/redblack/services/"+s+"/cmd/"+s)
	}
	if out, err := exec.Command("go", append([]string{"build", "-o", bin + "/"}, pkgs...)...).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	a, err := auth.Open(filepath.Join(dir, "creds"))
	if err != nil {
		t.Fatal(err)
	}
	accounts, err := a.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := a.Admin("admin")
	if err != nil {
		t.Fatal(err)
	}
	adminPath, err := a.WriteCreds("admin", admin)
	if err != nil {
		t.Fatal(err)
	}
	var logs testkit.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, nc, js := startCluster(ctx, t, bin, dir, accounts, adminPath, &logs)
	defer nc.Close()
	if r := topology.ReplicasFor(nc); r != 3 {
		t.Fatalf("replicas for a 3-node cluster: %d", r)
	}
	// the operator's audit log: R3, kept a year
	want := topology.Streams(topology.Options{ReleasesMaxAge: 365 * 24 * time.Hour, Duplicates: 10 * time.Minute, Replicas: 3})[0]
	if _, err := js.CreateStream(ctx, want); err != nil {
		t.Fatal(err)
	}
	// what `redblack topology ensure` does as the admin: the services have
	// no right to create streams
	if _, err := topology.Reconcile(ctx, js, topology.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	for _, name := range mesh.ServiceNames {
		creds, err := a.Service(name)
		if err != nil {
			t.Fatal(err)
		}
		path, err := a.WriteCreds(name, creds)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"--server", p.URLs(), "--creds", path, "--log-level", "warn"}
		switch name {
		case "provisioner":
			args = append(args, "--data", filepath.Join(dir, "provisioner"))
		case "router":
			args = append(args, "--http", "127.0.0.1:0", "--admin", "")
		}
		testkit.StartProcess(t, &logs, filepath.Join(bin, name), args...)
	}
	for _, name := range mesh.ServiceNames {
		for {
			if _, err := nc.Request("$SRV.PING.redblack-"+name, nil, 500*time.Millisecond); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s never answered:\n%s", name, logs.String())
			}
		}
	}
	check := func(kind, name string, s jetstream.Stream) {
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatalf("%s %s: %v", kind, name, err)
		}
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 || info.Cluster.Leader == "" {
			t.Errorf("%s %s: replicas %d, cluster %+v", kind, name, info.Config.Replicas, info.Cluster)
		}
	}
	for _, sc := range topology.Streams(topology.DefaultOptions()) {
		s, err := js.Stream(ctx, sc.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", sc.Name, err)
		}
		check("stream", sc.Name, s)
		if sc.Name == topology.StreamReleases {
			if age := s.CachedInfo().Config.MaxAge; age != want.MaxAge {
				t.Errorf("the audit log's max age is %s, the operator set %s", age, want.MaxAge)
			}
		}
	}
	for _, kc := range topology.Buckets(topology.DefaultOptions()) {
		s, err := js.Stream(ctx, "KV_"+kc.Bucket)
		if err != nil {
			t.Fatalf("bucket %s: %v", kc.Bucket, err)
		}
		check("bucket", kc.Bucket, s)
	}
	if t.Failed() {
		t.Log(logs.String())
	}
}

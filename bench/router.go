package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redblack/redblack/deploy/mesh"
	"github.com/redblack/redblack/shared/events"
	"github.com/redblack/redblack/shared/natsx"
	"github.com/redblack/redblack/shared/procfs"
	"github.com/redblack/redblack/shared/spec"
	"github.com/redblack/redblack/shared/topology"
)

// WrkResult is what one wrk run measured.
type WrkResult struct {
	Target   string
	RPS      float64
	P50, P99 time.Duration
	Requests int64
	Errors   int64 // socket errors and non-2xx/3xx responses
	Raw      string
}

// Mesh is a running mesh with hello groups, for the router benches.
type Mesh struct {
	M   *mesh.Mesh
	JS  jetstream.JetStream
	Dir string
}

// StartMesh starts the mesh in dir with a hello spec of capacity instances
// and the groups ready.
func StartMesh(dir, hello string, capacity int, groups ...string) (*Mesh, error) {
	return StartMeshWith(mesh.DefaultConfig(), dir, hello, capacity, groups...)
}

// StartMeshWith is StartMesh from cfg: with cfg.DataPlane, the router runs
// as its own process, as under `redblack up`.
func StartMeshWith(cfg mesh.Config, dir, hello string, capacity int, groups ...string) (*Mesh, error) {
	cfg.DataDir, cfg.NATSListen, cfg.Router.HTTP = dir, "127.0.0.1:0", "127.0.0.1:0"
	m, err := mesh.Start(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	nc, err := m.Connect("bench")
	if err != nil {
		m.Stop()
		return nil, err
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kv, _ := js.KeyValue(ctx, topology.BucketServices)
	if _, err := spec.Apply(ctx, kv, spec.Service{Name: "hello", Owner: "bench", Capacity: capacity, Artifact: spec.Artifact{Command: []string{hello}}}); err != nil {
		m.Stop()
		return nil, err
	}
	tap, _ := nc.SubscribeSync("fleet.hello.>")
	for _, g := range groups {
		if err := command(ctx, js, events.ServerGroupCreate, events.ServerGroupCommand{Service: "hello", Group: g, Version: g[len(g)-4:], Capacity: capacity}); err != nil {
			m.Stop()
			return nil, err
		}
		if _, err := Await(tap, events.ServerGroupReady, g, "", time.Minute); err != nil {
			m.Stop()
			return nil, err
		}
	}
	bm := &Mesh{M: m, JS: js, Dir: dir}
	return bm, nil
}

// Switch moves all of hello's traffic to group and waits until every router
// applied it.
func (b *Mesh) Switch(group string) error {
	nc, err := b.M.Connect("switch")
	if err != nil {
		return err
	}
	defer nc.Close()
	sub, _ := nc.SubscribeSync("release.hello.traffic.switched")
	refused, _ := nc.SubscribeSync("fleet.hello.traffic.refused")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev, err := events.New("redblack/bench", events.TrafficSwitch, "hello", "", events.TrafficCommand{Service: "hello", Group: group})
	if err != nil {
		return err
	}
	if _, err := natsx.Publish(ctx, b.JS, events.TrafficSwitch.Subject("hello"), ev); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if m, err := refused.NextMsg(time.Millisecond); err == nil {
			return fmt.Errorf("switch refused: %s", m.Data)
		}
		m, err := sub.NextMsg(20 * time.Millisecond)
		if err != nil {
			continue
		}
		if out, err := events.Decode(m.Data); err == nil && strings.HasPrefix(out.ID, ev.ID+":") {
			return nil
		}
	}
	return fmt.Errorf("switch to %s not announced in 20s", group)
}

// Stop stops the mesh (and its instances).
func (b *Mesh) Stop() { b.M.Stop() }

var (
	rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reqRE = regexp.MustCompile(`(\d+) requests in`)
	errRE = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	nonRE = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	pctRE = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\b`)
)

// Wrk runs wrk against url with the Host header for d at c connections on
// 2 threads and parses what it prints.
func Wrk(target, url, host string, c int, d time.Duration) (WrkResult, error) {
	args := []string{"-t2", fmt.Sprintf("-c%d", c), fmt.Sprintf("-d%ds", int(d.Seconds())), "--latency"}
	if host != "" {
		args = append(args, "-H", "Host: "+host)
	}
	out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
	l := WrkResult{Target: target, Raw: string(out)}
	if err != nil {
		return l, fmt.Errorf("wrk %s: %v\n%s", target, err, out)
	}
	s := string(out)
	if m := rpsRE.FindStringSubmatch(s); m != nil {
		l.RPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reqRE.FindStringSubmatch(s); m != nil {
		l.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := errRE.FindStringSubmatch(s); m != nil {
		for _, v := range m[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			l.Errors += n
		}
	}
	if m := nonRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		l.Errors += n
	}
	for _, m := range pctRE.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			l.P50 = d
		} else {
			l.P99 = d
		}
	}
	return l, nil
}

// FreePort returns a free loopback port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Anchor is a running nginx, haproxy or Caddy.
type Anchor struct {
	Name string
	Port int
	// Config is the configuration it runs with, as written.
	Config string
	cmd    *exec.Cmd
}

// Pid is the anchor's process (nginx's master, whose workers are its
// children).
func (a *Anchor) Pid() int { return a.cmd.Process.Pid }

// Stop kills it.
func (a *Anchor) Stop() {
	if a.cmd != nil && a.cmd.Process != nil {
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		_ = a.cmd.Wait()
	}
}

// StartNginx runs nginx with 2 workers, upstream keep-alive and no limit
// on a connection's requests (nginx closes a client or upstream connection
// after 1,000 by default) in front of backends.
func StartNginx(dir string, backends []string) (*Anchor, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	var ups strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&ups, "    server %s;\n", b)
	}
	conf := fmt.Sprintf(`worker_processes 2;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
  upstream hello {
%[2]s    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://hello;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`, dir, ups.String(), port)
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return startAnchor("nginx", port, conf, exec.Command("nginx", "-c", cfg, "-p", dir))
}

// StartHAProxy runs haproxy with 2 threads and connection reuse.
func StartHAProxy(dir string, backends []string) (*Anchor, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	var srv strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&srv, "  server s%d %s\n", i, b)
	}
	conf := fmt.Sprintf(`global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:%d
  default_backend be
backend be
  balance leastconn
%s`, port, srv.String())
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return startAnchor("haproxy", port, conf, exec.Command("haproxy", "-f", cfg, "-db"))
}

// StartCaddy runs Caddy, the Go peer, as a reverse proxy in front of
// backends: least connections, no access log, no admin endpoint, HTTP only.
func StartCaddy(dir string, backends []string) (*Anchor, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`{
	admin off
	auto_https off
}
http://:%d {
	bind 127.0.0.1
	reverse_proxy %s {
		lb_policy least_conn
	}
}
`, port, strings.Join(backends, " "))
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("caddy", "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	return startAnchor("caddy", port, conf, cmd)
}

func startAnchor(name string, port int, conf string, cmd *exec.Cmd) (*Anchor, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w (apt-get install nginx haproxy caddy wrk hey)", name, err)
	}
	a := &Anchor{Name: name, Port: port, Config: conf, cmd: cmd}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return a, nil
		}
	}
	a.Stop()
	return nil, fmt.Errorf("%s did not listen on %d", name, port)
}

// CPUResult is what a fixed-rate run measured of a proxy's CPU.
type CPUResult struct {
	// Requests answered 2xx in the run, and the others.
	Requests, Errors int64
	// CPU is the proxy's CPU time (user and system, its process and its
	// children) over the run; PerRequest is CPU / Requests.
	CPU, PerRequest time.Duration
}

var heyStatusRE = regexp.MustCompile(`\[(\d+)\]\s+(\d+) responses`)

// CPUPerRequest sends rate requests/s (below saturation: the proxies' CPU
// then measures their work per request, not the contention for the cores)
// for d with hey to url with the Host header, and reads the CPU time of
// the process pid and its children from /proc before and after.
func CPUPerRequest(pid int, url, host string, rate, workers int, d time.Duration) (CPUResult, error) {
	var r CPUResult
	before, err := procfs.TreeCPU(pid)
	if err != nil {
		return r, err
	}
	args := []string{"-z", d.String(), "-c", strconv.Itoa(workers), "-q", strconv.Itoa(max(rate/workers, 1)), "-disable-compression"}
	if host != "" {
		args = append(args, "-host", host)
	}
	out, err := exec.Command("hey", append(args, url)...).CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("hey %s: %v\n%s", url, err, out)
	}
	after, err := procfs.TreeCPU(pid)
	if err != nil {
		return r, err
	}
	for _, m := range heyStatusRE.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		if m[1][0] == '2' {
			r.Requests += n
		} else {
			r.Errors += n
		}
	}
	if r.Requests == 0 {
		return r, fmt.Errorf("hey %s: no 2xx answer\n%s", url, out)
	}
	r.CPU = after - before
	r.PerRequest = r.CPU / time.Duration(r.Requests)
	return r, nil
}

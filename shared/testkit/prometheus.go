package testkit

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server (Debian's prometheus package) a
// test runs: its own data directory, on loopback, stopped in the test's
// cleanup (or before, by Stop).
type Prometheus struct {
	// URL is the server's base URL.
	URL  string
	proc *Process
	out  *SyncBuffer
}

// StartPrometheus runs prometheus with the scrape configs given (YAML,
// the list under scrape_configs:), a 1 s scrape and evaluation interval,
// and waits until it is ready. Without the binary the test is skipped, or
// fails under CI (.ci/run installs it).
func StartPrometheus(t testing.TB, scrapeConfigs string) *Prometheus {
	t.Helper()
	exe, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no prometheus on the PATH: .ci/run installs it (apt-get install prometheus)")
		}
		t.Skip("no prometheus on the PATH (apt-get install prometheus)")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	body := "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n" + scrapeConfigs
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // prometheus takes the port (it cannot report one it picked)
	p := &Prometheus{URL: "http://" + addr, out: &SyncBuffer{}}
	p.proc = StartProcess(t, p.out, exe, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.proc.Alive(t, "prometheus", p.out)
		if resp, err := http.Get(p.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus at %s not ready in 30s:\n%s", p.URL, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server now (a provider that goes away).
func (p *Prometheus) Stop() {
	_ = p.proc.Cmd.Process.Kill()
	<-p.proc.Exited
}

// Log is what the server wrote.
func (p *Prometheus) Log() string { return p.out.String() }

// String names the server.
func (p *Prometheus) String() string { return fmt.Sprintf("prometheus at %s", p.URL) }

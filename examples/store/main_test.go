package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// start runs the store binary on the volume and waits for its health.
func start(t *testing.T, bin, volume string) (*exec.Cmd, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--listen", addr, "--version", "v1")
	cmd.Env = append(os.Environ(), "REDBLACK_VOLUME="+volume)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return cmd, "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatal("store did not start")
		}
	}
}

// Writers put keys while the store process is SIGKILLed; started again on
// the same volume, it has every write it acknowledged (fsynced before the
// 204), with its last value (or the value of a write still in flight when
// it died, which may have reached the disk unacknowledged).
func TestKillKeepsAcknowledgedWrites(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "store")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	volume := t.TempDir()
	cmd, url := start(t, bin, volume)
	var mu sync.Mutex
	acked := map[string]string{}
	inflight := map[string]string{} // the write each key had in flight: applied or not when the store died
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key, val := fmt.Sprintf("w%d-%d", w, i%50), fmt.Sprintf("value %d", i)
				mu.Lock()
				inflight[key] = val
				mu.Unlock()
				req, _ := http.NewRequest("PUT", url+"/kv/"+key, strings.NewReader(val))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // the store is gone: this write may or may not be on disk
				}
				resp.Body.Close()
				mu.Lock()
				if resp.StatusCode == http.StatusNoContent {
					acked[key] = val
				}
				delete(inflight, key)
				mu.Unlock()
			}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d keys written in 10 s", n)
		}
	}
	cmd.Process.Kill() // SIGKILL, writers still writing
	cmd.Wait()
	close(stop)
	wg.Wait()

	_, url = start(t, bin, volume)
	lost := 0
	for key, want := range acked {
		resp, err := http.Get(url + "/kv/" + key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want && (inflight[key] == "" || string(b) != inflight[key]) {
			lost++
			t.Errorf("%s: %q after the restart, acknowledged %q", key, b, want)
		}
	}
	t.Logf("%d keys acknowledged before the SIGKILL, %d lost", len(acked), lost)
}

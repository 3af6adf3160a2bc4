package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Writes puts keys through a service that stores them (api --store: PUT
// and GET /kv/KEY) and keeps what it must read back: per key the value
// last acknowledged (204) and the values of the writes that failed after
// it (a write can reach the disk and its answer be lost). Each writer owns
// its keys and writes them in turn, so a key's last acknowledged value is
// the one it must have. Failed writes are counted by stage (Stage).
type Writes struct {
	// do sends one request about key: through the router, or to the
	// key's slot directly.
	do func(ctx context.Context, method, key string, body io.Reader) (*http.Response, error)

	mu     sync.Mutex
	acked  map[string]string
	maybe  map[string][]string
	failed map[string]int
	stage  string

	ok   atomic.Int64
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// WriteTimeout bounds one write (the store tier's own wait for a slot
// being replaced is shorter).
const WriteTimeout = 15 * time.Second

// StartWrites starts writers, each over its keys, through the router at
// addr with Host host (a tier that passes /kv/KEY on), until Stop.
func StartWrites(addr, host string, writers, keys int) *Writes {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	return startWrites(writers, keys, func(ctx context.Context, method, key string, body io.Reader) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+"/kv/"+key, body)
		if err != nil {
			return nil, err
		}
		req.Host = host
		return client.Do(req)
	})
}

// KeyCaller sends a request to the slot of a stateful service that holds
// key (lb.Client.DoKey).
type KeyCaller interface {
	DoKey(req *http.Request, key string) (*http.Response, error)
}

// StartKeyWrites starts writers that put their keys straight into the
// stateful service's slots with c, until Stop.
func StartKeyWrites(c KeyCaller, service string, writers, keys int) *Writes {
	return startWrites(writers, keys, func(ctx context.Context, method, key string, body io.Reader) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, "http://"+service+"/kv/"+key, body)
		if err != nil {
			return nil, err
		}
		return c.DoKey(req, key)
	})
}

func startWrites(writers, keys int, do func(ctx context.Context, method, key string, body io.Reader) (*http.Response, error)) *Writes {
	w := &Writes{do: do, acked: map[string]string{}, maybe: map[string][]string{}, failed: map[string]int{}, stage: "start", done: make(chan struct{})}
	for i := range writers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for j := 0; ; j++ {
				select {
				case <-w.done:
					return
				default:
				}
				w.write(fmt.Sprintf("w%d-%d", i, j%keys), fmt.Sprint(j))
			}
		}()
	}
	return w
}

// Stage names what the next failed writes are counted under.
func (w *Writes) Stage(name string) {
	w.mu.Lock()
	w.stage = name
	w.mu.Unlock()
}

func (w *Writes) write(key, value string) {
	ctx, cancel := context.WithTimeout(context.Background(), WriteTimeout)
	defer cancel()
	resp, err := w.do(ctx, http.MethodPut, key, strings.NewReader(value))
	status := 0
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if status == http.StatusNoContent {
		w.acked[key], w.maybe[key] = value, nil
		w.ok.Add(1)
		return
	}
	w.maybe[key] = append(w.maybe[key], value)
	w.failed[w.stage]++
}

// OK is the number of writes acknowledged.
func (w *Writes) OK() int64 { return w.ok.Load() }

// Failed is the number of failed writes in stage.
func (w *Writes) Failed(stage string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed[stage]
}

// AwaitOK waits until n more writes are acknowledged, for at most limit.
func (w *Writes) AwaitOK(n int64, limit time.Duration) error {
	start, deadline := w.ok.Load(), time.Now().Add(limit)
	for w.ok.Load() < start+n {
		if time.Now().After(deadline) {
			return fmt.Errorf("writes: %d of %d acknowledged in %s", w.ok.Load()-start, n, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Stop stops the writers and waits for them; again, it does nothing.
func (w *Writes) Stop() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}

// Keys is the number of keys acknowledged at least once.
func (w *Writes) Keys() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// Lost reads every acknowledged key back (after Stop) and returns those
// whose value is neither the last one acknowledged nor a later attempt's,
// each with what was read.
func (w *Writes) Lost() []string {
	w.mu.Lock()
	keys := make([]string, 0, len(w.acked))
	for k := range w.acked {
		keys = append(keys, k)
	}
	w.mu.Unlock()
	sort.Strings(keys)
	var out []string
	for _, key := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), WriteTimeout)
		resp, err := w.do(ctx, http.MethodGet, key, nil)
		if err != nil {
			cancel()
			out = append(out, key+": "+err.Error())
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		w.mu.Lock()
		want, maybe := w.acked[key], w.maybe[key]
		w.mu.Unlock()
		got := string(b)
		ok := resp.StatusCode == http.StatusOK && got == want
		for _, m := range maybe {
			ok = ok || (resp.StatusCode == http.StatusOK && got == m)
		}
		if !ok {
			out = append(out, fmt.Sprintf("%s: %d %q, acknowledged %q", key, resp.StatusCode, got, want))
		}
	}
	return out
}

// Summary is the writes' figures in one line.
func (w *Writes) Summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	stages := make([]string, 0, len(w.failed))
	for s, n := range w.failed {
		stages = append(stages, fmt.Sprintf("%s %d", s, n))
	}
	sort.Strings(stages)
	failed := "none failed"
	if len(stages) > 0 {
		failed = "failed: " + strings.Join(stages, ", ")
	}
	return fmt.Sprintf("%d writes acknowledged over %d keys; %s", w.ok.Load(), len(w.acked), failed)
}

package bench

import (
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redblack/redblack/services/router/proxy"
)

// Load is steady HTTP load through the router: workers send GET requests
// with a Host header, one after another, until Stop.
type Load struct {
	okN, failedN atomic.Int64
	rescuedN     atomic.Int64 // answered by a fallback group (X-Redblack-Fallback)
	method       string
	versions     sync.Map
	done         chan struct{}
	wg           sync.WaitGroup
	onOK         func(version string, at time.Time) // sees every 200 response's X-Version
	onFail       func(err error, status int)        // sees every failure
}

// StartLoad starts workers against http://addr/ with Host host. onOK and
// onFail may be nil.
func StartLoad(addr, host string, workers int, onOK func(string, time.Time), onFail func(error, int)) *Load {
	return start(addr, host, http.MethodGet, workers, 0, onOK, onFail)
}

// StartPosts is StartLoad with POST requests (a small body): the
// non-idempotent traffic a rescue does not retry unless the spec says so.
func StartPosts(addr, host string, workers int, onFail func(error, int)) *Load {
	return start(addr, host, http.MethodPost, workers, 0, nil, onFail)
}

// StartPaced is StartLoad at a fixed rate: each worker sends one request
// every workers/rate, whatever the answers' latency (a tick missed while a
// request is slow is skipped, not made up), so that the request rate is
// the load's and not the system's. Enough workers keep up with the
// latency: rate × latency of them are busy at once.
func StartPaced(addr, host string, rate float64, workers int, onOK func(string, time.Time), onFail func(error, int)) *Load {
	return start(addr, host, http.MethodGet, workers, time.Duration(float64(workers)/rate*float64(time.Second)), onOK, onFail)
}

func start(addr, host, method string, workers int, every time.Duration, onOK func(string, time.Time), onFail func(error, int)) *Load {
	l := &Load{done: make(chan struct{}), onOK: onOK, onFail: onFail, method: method}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	for i := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var tick <-chan time.Time
			if every > 0 {
				// the workers' ticks spread over the interval
				select {
				case <-l.done:
					return
				case <-time.After(every * time.Duration(i) / time.Duration(workers)):
				}
				t := time.NewTicker(every)
				defer t.Stop()
				tick = t.C
			}
			for {
				if tick != nil {
					select {
					case <-l.done:
						return
					case <-tick:
					}
				}
				select {
				case <-l.done:
					return
				default:
				}
				l.once(client, addr, host)
			}
		}()
	}
	return l
}

// once sends one request and counts its outcome.
func (l *Load) once(client *http.Client, addr, host string) {
	var body io.Reader
	if l.method == http.MethodPost {
		body = strings.NewReader("post")
	}
	req, _ := http.NewRequest(l.method, "http://"+addr+"/", body)
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		l.fail(err, 0)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Header.Get(proxy.FallbackHeader) != "" {
		l.rescuedN.Add(1)
	}
	if resp.StatusCode != http.StatusOK {
		l.fail(nil, resp.StatusCode)
		return
	}
	l.okN.Add(1)
	v := resp.Header.Get("X-Version")
	l.versions.Store(v, true)
	if l.onOK != nil {
		l.onOK(v, time.Now())
	}
}

func (l *Load) fail(err error, status int) {
	l.failedN.Add(1)
	if l.onFail != nil {
		l.onFail(err, status)
	}
}

// Stop ends the load (idempotent) and returns its counts and the versions
// that answered.
func (l *Load) Stop() (ok, failed int64, versions []string) {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
	l.versions.Range(func(k, _ any) bool { versions = append(versions, k.(string)); return true })
	sort.Strings(versions)
	return l.okN.Load(), l.failedN.Load(), versions
}

// OK is the number of 200 responses so far.
func (l *Load) OK() int64 { return l.okN.Load() }

// Rescued is the number of answers a fallback group gave so far, after
// the request had failed on a new or canary group.
func (l *Load) Rescued() int64 { return l.rescuedN.Load() }

// Failed is the number of failed requests so far.
func (l *Load) Failed() int64 { return l.failedN.Load() }

package bench

import (
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Load is steady HTTP load through the router: workers send GET requests
// with a Host header, one after another, until Stop.
type Load struct {
	okN, failedN atomic.Int64
	versions     sync.Map
	done         chan struct{}
	wg           sync.WaitGroup
	onOK         func(version string, at time.Time) // sees every 200 response's X-Version
	onFail       func(err error, status int)        // sees every failure
}

// StartLoad starts workers against http://addr/ with Host host. onOK and
// onFail may be nil.
func StartLoad(addr, host string, workers int, onOK func(string, time.Time), onFail func(error, int)) *Load {
	l := &Load{done: make(chan struct{}), onOK: onOK, onFail: onFail}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.done:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
				req.Host = host
				resp, err := client.Do(req)
				if err != nil {
					l.fail(err, 0)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.fail(nil, resp.StatusCode)
					continue
				}
				l.okN.Add(1)
				v := resp.Header.Get("X-Version")
				l.versions.Store(v, true)
				if l.onOK != nil {
					l.onOK(v, time.Now())
				}
			}
		}()
	}
	return l
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

// Failed is the number of failed requests so far.
func (l *Load) Failed() int64 { return l.failedN.Load() }

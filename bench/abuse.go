package bench

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redblack/redblack/shared/procfs"
)

// abuseResult is what one proxy did while one address held connections
// open, each with one byte of a request sent.
type abuseResult struct {
	target             string
	held               int   // the attacker's connections still open after the others' run
	ok, failed         int64 // the other clients' requests
	rssBefore, rssPeak uint64
}

// attackerAddr is the one address that opens the held connections; the
// other clients come from 127.0.1.x.
const attackerAddr = "127.0.0.2"

// runAbuse drives every proxy in targets (one at a time): one address
// opens o.abuseConns connections, sends one byte on each and holds them;
// then 16 other clients, each from an address of its own and each request
// on a new connection, send requests for o.dur. The proxy's resident
// memory (its process tree) is read before and every 100 ms.
func runAbuse(env Env, o routerOptions, targets []routerTarget) ([]abuseResult, error) {
	var out []abuseResult
	for _, t := range targets {
		if t.pid == 0 {
			continue // the backend itself is no edge
		}
		env.Progress(fmt.Sprintf("%s: %d connections from %s holding one byte each, then 16 other clients for %s", t.name, o.abuseConns, attackerAddr, o.dur))
		r, err := abuseOne(t, o.abuseConns, o.dur)
		if err != nil {
			return out, fmt.Errorf("%s: %w", t.name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func abuseOne(t routerTarget, conns int, d time.Duration) (abuseResult, error) {
	r := abuseResult{target: t.name}
	var err error
	if r.rssBefore, err = procfs.TreeRSS(t.pid); err != nil {
		return r, err
	}
	stop := make(chan struct{})
	var peak atomic.Uint64
	var watch sync.WaitGroup
	watch.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if n, err := procfs.TreeRSS(t.pid); err == nil && n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	held := hold(t.url, conns)
	r.ok, r.failed = others(t.url, t.host, d)
	for _, c := range held {
		if stillOpen(c) {
			r.held++
		}
		c.Close()
	}
	close(stop)
	watch.Wait()
	r.rssPeak = peak.Load()
	return r, nil
}

// hold opens n connections to url's host from attackerAddr, 64 dials at a
// time, and sends one byte on each; it returns those that took the byte.
func hold(url string, n int) []net.Conn {
	addr := url[len("http://") : len(url)-1]
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackerAddr)}, Timeout: 2 * time.Second}
	var mu sync.Mutex
	var held []net.Conn
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 64 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				if _, err := c.Write([]byte("G")); err != nil {
					c.Close()
					continue
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return held
}

// stillOpen reports whether the proxy has neither closed c nor answered
// on it (a read finds nothing within a millisecond).
func stillOpen(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// others runs 16 clients, each from an address of its own (127.0.1.x) and
// each request on a new connection, against url with host for d, and
// counts the 200s and the rest.
func others(url, host string, d time.Duration) (ok, failed int64) {
	var okN, failedN atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range 16 {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i+1))}, Timeout: 5 * time.Second}
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}}
		wg.Go(func() {
			for time.Now().Before(end) {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if host != "" {
					req.Host = host
				}
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				if err == nil && resp.StatusCode == http.StatusOK {
					okN.Add(1)
				} else {
					failedN.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return okN.Load(), failedN.Load()
}

// printAbuse prints each proxy's figures under the abuse.
func printAbuse(env Env, o routerOptions, rs []abuseResult) {
	fmt.Fprintf(env.Out, "one address (%s) opens %d connections and sends one byte on each; then 16 other clients (127.0.1.x, a new connection per request) for %s; resident memory of each proxy's process tree\n",
		attackerAddr, o.abuseConns, o.dur)
	tab := table(env.Out)
	row(tab, "target", "held open", "others' requests", "ok", "ok %", "RSS before", "RSS peak")
	for _, r := range rs {
		pct := 0.0
		if n := r.ok + r.failed; n > 0 {
			pct = 100 * float64(r.ok) / float64(n)
		}
		row(tab, r.target, r.held, r.ok+r.failed, r.ok, fmt.Sprintf("%.2f", pct),
			fmt.Sprintf("%d MiB", r.rssBefore>>20), fmt.Sprintf("%d MiB", r.rssPeak>>20))
	}
	tab.Flush()
}

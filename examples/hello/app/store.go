package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// KeyCaller sends a request to the instance of a stateful service's slot
// that holds a key: the discovery client's DoKey in production.
type KeyCaller interface {
	DoKey(req *http.Request, key string) (*http.Response, error)
}

// StoreTimeout bounds one key's call to the stateful service, the wait for
// its slot's replacement included (a rolling release stops the slot's old
// process before it starts the new one).
const StoreTimeout = 10 * time.Second

// StoreVersionHeader names the stateful service's version that answered.
const StoreVersionHeader = "X-Store-Version"

// maxKV bounds a value passed through.
const maxKV = 64 << 10

// serveKV passes GET and PUT /kv/KEY to the stateful service (--store),
// to the slot that holds KEY: the tier hides the store's rolling upgrade
// from its callers, who see a write acknowledged (204) only once the
// store has it on disk.
func (a *App) serveKV(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/kv/")
	if key == "" || strings.Contains(key, "/") {
		http.Error(w, "want /kv/KEY", http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPut {
		w.Header().Set("Allow", "GET, PUT")
		http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("X-Version", a.cfg.Version)
	if f := a.work(); f != nil {
		http.Error(w, f.reason, http.StatusInternalServerError)
		return
	}
	var body []byte
	if r.Method == http.MethodPut {
		var err error
		if body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxKV)); err != nil {
			http.Error(w, fmt.Sprintf("value over %d bytes", maxKV), http.StatusRequestEntityTooLarge)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), StoreTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+a.cfg.Store+"/kv/"+url.PathEscape(key), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := a.cfg.Keys.DoKey(req, key)
	if err != nil {
		code := http.StatusBadGateway
		if errors.Is(err, context.DeadlineExceeded) {
			code = http.StatusGatewayTimeout
		}
		http.Error(w, fmt.Sprintf("%s: store %s: %v", a.cfg.Service, a.cfg.Store, err), code)
		return
	}
	defer resp.Body.Close()
	w.Header().Set(StoreVersionHeader, resp.Header.Get("X-Version"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, maxKV+1))
}

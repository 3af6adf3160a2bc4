package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// keys is a KeyCaller that records what it was asked and answers with
// status (or err).
type keys struct {
	method, url, key, body string
	status                 int
	err                    error
}

func (k *keys) DoKey(req *http.Request, key string) (*http.Response, error) {
	k.method, k.url, k.key = req.Method, req.URL.String(), key
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		k.body = string(b)
	}
	if _, ok := req.Context().Deadline(); !ok {
		return nil, errors.New("no deadline")
	}
	if k.err != nil {
		return nil, k.err
	}
	h := http.Header{}
	h.Set("X-Version", "v9")
	return &http.Response{StatusCode: k.status, Header: h, Body: io.NopCloser(strings.NewReader("stored"))}, nil
}

// TestKVGoesToTheStore: /kv/KEY is passed to the store with the key (each
// key to its slot is the KeyCaller's part), with a deadline, and its answer
// comes back with the store's version; a store that cannot be reached is a
// 502, one that cannot answer in time a 504, and anything but GET or PUT a
// 405.
func TestKVGoesToTheStore(t *testing.T) {
	k := &keys{status: http.StatusNoContent}
	a := New(Config{Version: "v1", Store: "store", Keys: k}, time.Now)
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/kv/a%20b", strings.NewReader("v")))
	if rec.Code != http.StatusNoContent || rec.Header().Get(StoreVersionHeader) != "v9" || k.key != "a b" || k.body != "v" ||
		k.url != "http://store/kv/a%20b" || k.method != http.MethodPut {
		t.Fatalf("put: %d %v; asked %+v", rec.Code, rec.Header(), k)
	}
	for _, c := range []struct {
		err  error
		want int
	}{{errors.New("connection refused"), http.StatusBadGateway}, {context.DeadlineExceeded, http.StatusGatewayTimeout}} {
		k.err = c.err
		rec = httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/kv/a", nil))
		if rec.Code != c.want {
			t.Fatalf("%v: %d, want %d", c.err, rec.Code, c.want)
		}
	}
	rec = httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/kv/a", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("delete: %d", rec.Code)
	}
	plain := New(Config{Version: "v1"}, time.Now) // no --store: /kv/ is an ordinary path
	rec = httptest.NewRecorder()
	plain.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/kv/a", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("without --store: %d", rec.Code)
	}
}

package bench

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Forward relays whole HTTP exchanges, and spreads connections over its
// backends in turn.
func TestForward(t *testing.T) {
	var backends []string
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			_, _ = io.WriteString(w, name+":"+string(body))
		}))
		t.Cleanup(srv.Close)
		backends = append(backends, strings.TrimPrefix(srv.URL, "http://"))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Forward(l, backends) }()
	t.Cleanup(func() { l.Close(); <-done })

	seen := map[string]int{}
	for range 4 {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // a connection each
		resp, err := c.Post("http://"+l.Addr().String()+"/", "text/plain", strings.NewReader("hi"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[string(body)]++
	}
	if seen["a:hi"] != 2 || seen["b:hi"] != 2 {
		t.Fatalf("answers %v, want each backend twice with the body", seen)
	}
	if err := Forward(l, nil); err == nil || !strings.Contains(err.Error(), "no backend") {
		t.Fatalf("no backends: %v", err)
	}
}

package kv

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReopenKeepsEveryAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, kv := range [][2]string{{"a", "1"}, {"b", "2"}, {"a", "3"}} {
		if err := s.Put(kv[0], kv[1]); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	s.Close()
	s, err = Open(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.Get("a"); v != "3" || s.Len() != 2 || s.Torn {
		t.Fatalf("after reopening: a=%q, %d keys, torn %v", v, s.Len(), s.Torn)
	}
}

// A crash in the middle of a write leaves a partial last line: it was
// never acknowledged, and is cut off; the next write follows the last whole
// record.
func TestTornLastRecordIsCut(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, 1)
	s.Put("a", "1")
	s.Close()
	f, _ := os.OpenFile(filepath.Join(dir, FileName), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"s":1,"k":"b","v":"hal`)
	f.Close()
	s, err := Open(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("b"); ok || !s.Torn {
		t.Fatalf("torn record: b present %v, torn %v", ok, s.Torn)
	}
	s.Put("c", "3")
	s.Close()
	s, err = Open(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.Get("c"); v != "3" || s.Len() != 2 || s.Torn {
		t.Fatalf("after the cut: c=%q, %d keys, torn %v", v, s.Len(), s.Torn)
	}
}

// A version that writes schema 2 leaves records a schema-1 version cannot
// read: rolled back, it refuses the volume by name rather than misread it.
func TestNewerSchemaIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, 1)
	s.Put("a", "1")
	s.Close()
	s, _ = Open(dir, 2) // reads schema 1, writes 2
	s.Put("b", "2")
	s.Close()
	if _, err := Open(dir, 1); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("schema 1 over schema-2 records: %v", err)
	}
	if _, err := Open(dir, 0); err == nil {
		t.Fatal("schema 0 accepted")
	}
}

func TestHTTP(t *testing.T) {
	s, err := Open(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler(Options{Service: "store", Version: "v1"}))
	defer srv.Close()
	req, _ := http.NewRequest("PUT", srv.URL+"/kv/a", strings.NewReader("hello"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Version") != "v1" {
		t.Fatalf("put: %v %v", resp, err)
	}
	resp, _ = http.Get(srv.URL + "/kv/a")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hello" {
		t.Fatalf("get: %d %q", resp.StatusCode, b)
	}
	if resp, _ := http.Get(srv.URL + "/"); resp.StatusCode != 200 || resp.Header.Get(ChainHeader) != "store v1" {
		t.Fatalf("get /: %d chain %q", resp.StatusCode, resp.Header.Get(ChainHeader))
	}
	if resp, _ := http.Get(srv.URL + "/kv/nope"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("get of a missing key: %d", resp.StatusCode)
	}
	big, _ := http.NewRequest("PUT", srv.URL+"/kv/big", strings.NewReader(strings.Repeat("x", MaxValue+1)))
	if resp, _ := http.DefaultClient.Do(big); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("put over the limit: %d", resp.StatusCode)
	}
	if _, ok := s.Get("big"); ok {
		t.Fatal("a value over the limit was stored")
	}
	failing := httptest.NewServer(s.Handler(Options{Service: "store", Version: "v3", FailWrites: true}))
	defer failing.Close()
	bad, _ := http.NewRequest("PUT", failing.URL+"/kv/a", strings.NewReader("lost"))
	if resp, _ := http.DefaultClient.Do(bad); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("put with failWrites: %d", resp.StatusCode)
	}
	if v, _ := s.Get("a"); v != "hello" {
		t.Fatalf("a refused write changed a to %q", v)
	}
}

// One process per volume: while a store has it open, a second Open fails
// with ErrInUse; once it is closed, the volume opens again.
func TestSecondOpenOfAVolumeIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, 1); !errors.Is(err, ErrInUse) {
		t.Fatalf("second open: %v; want ErrInUse", err)
	}
	s.Close()
	s2, err := Open(dir, 1)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	s2.Close()
}

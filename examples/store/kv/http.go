package kv

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxValue bounds a value (413 above it).
const MaxValue = 64 << 10

// Handler serves the store over HTTP:
//
//	PUT /kv/KEY   the body is the value; 204 once it is on disk
//	GET /kv/KEY   the value, or 404
//	GET /healthz  ok, with the version and the schema
//
// Answers carry X-Version.
func (s *Store) Handler(version string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version", version)
		fmt.Fprintf(w, "ok %s schema %d, %d keys\n", version, s.schema, s.Len())
	})
	mux.HandleFunc("PUT /kv/{key}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version", version)
		key := r.PathValue("key")
		if key == "" || strings.ContainsAny(key, "\x00\n") {
			http.Error(w, "bad key", http.StatusBadRequest)
			return
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxValue))
		if err != nil {
			http.Error(w, fmt.Sprintf("value over %d bytes", MaxValue), http.StatusRequestEntityTooLarge)
			return
		}
		if err := s.Put(key, string(b)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /kv/{key}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version", version)
		v, ok := s.Get(r.PathValue("key"))
		if !ok {
			http.Error(w, "no such key", http.StatusNotFound)
			return
		}
		io.WriteString(w, v)
	})
	return mux
}

package kv

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MaxValue bounds a value (413 above it).
const MaxValue = 64 << 10

// Options are what the HTTP side says of itself, and its failure mode.
type Options struct {
	// Service and Version name the store in answers (X-Version, and
	// X-Chain on GET /, as a tier of the demo's chain).
	Service, Version string
	// FailWrites: every PUT answers 500 and writes nothing (a bug that
	// shows on some slots' data only: a release that must fail its
	// verify).
	FailWrites bool
}

// ChainHeader is the demo's chain of versions (examples/hello's).
const ChainHeader = "X-Chain"

// Handler serves the store over HTTP:
//
//	PUT /kv/KEY   the body is the value; 204 once it is on disk
//	GET /kv/KEY   the value, or 404
//	GET /         "<service> <version>", also in X-Chain
//	GET /healthz  ok, with the version and the schema
//
// Answers carry X-Version.
func (s *Store) Handler(o Options) http.Handler {
	version := o.Version
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version", version)
		w.Header().Set(ChainHeader, o.Service+" "+version)
		fmt.Fprintf(w, "%s %s, %d keys\n", o.Service, version, s.Len())
	})
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
		if o.FailWrites {
			http.Error(w, "write refused (--fail-slots)", http.StatusInternalServerError)
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

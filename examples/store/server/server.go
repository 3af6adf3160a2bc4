// Package server is the example stateful service as a program: a small
// HTTP key-value store that keeps its data in the instance's volume
// ($REDBLACK_VOLUME), as an append-only file fsynced on every write
// (package kv), listening on $PORT (or --listen). The store command and
// `redblack example store` both run it.
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redblack/redblack/examples/store/kv"
)

// Main runs the store with args (its flags) and returns its exit status.
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", envOr("REDBLACK_VERSION", "v0"), "version to report (env REDBLACK_VERSION)")
	schema := fs.Int("schema", 1, "the schema this version writes; it reads every schema up to it")
	listen := fs.String("listen", "", "address to listen on (default 127.0.0.1:$PORT)")
	volume := fs.String("volume", os.Getenv("REDBLACK_VOLUME"), "the data directory (env REDBLACK_VOLUME)")
	failSlots := fs.String("fail-slots", "", "SLOT[,SLOT]: an instance running one of these slots ($REDBLACK_SLOT) answers 500 to every write (a release that must fail its verify)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr := *listen
	if addr == "" {
		if os.Getenv("PORT") == "" {
			fmt.Fprintln(stderr, "store: set PORT or --listen")
			return 2
		}
		addr = "127.0.0.1:" + os.Getenv("PORT")
	}
	if *volume == "" {
		fmt.Fprintln(stderr, "store: set REDBLACK_VOLUME or --volume: a store keeps its data in a volume")
		return 2
	}
	s, err := kv.Open(*volume, *schema)
	if err != nil {
		fmt.Fprintf(stderr, "store: %v\n", err)
		return 1
	}
	defer s.Close()
	if s.Torn {
		fmt.Fprintln(stderr, "store: a torn last record (a write never acknowledged) was cut off")
	}
	slot := os.Getenv("REDBLACK_SLOT")
	failWrites := slot != "" && slices.Contains(strings.Split(*failSlots, ","), slot)
	service := os.Getenv("REDBLACK_SERVICE")
	if service == "" {
		service = "store"
	}
	srv := &http.Server{Addr: addr, Handler: s.Handler(kv.Options{Service: service, Version: *version, FailWrites: failWrites}), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Fprintf(stderr, "store %s (schema %d) listening on %s, %d keys in %s\n", *version, *schema, addr, s.Len(), *volume)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "store: %v\n", err)
		return 1
	}
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

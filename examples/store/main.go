// Command store is the example stateful service: a small HTTP key-value
// store that keeps its data in the instance's volume ($REDBLACK_VOLUME), as
// an append-only file fsynced on every write (package kv). It listens on
// $PORT (or --listen).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redblack/redblack/examples/store/kv"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("store", flag.ContinueOnError)
	version := fs.String("version", envOr("REDBLACK_VERSION", "v0"), "version to report (env REDBLACK_VERSION)")
	schema := fs.Int("schema", 1, "the schema this version writes; it reads every schema up to it")
	listen := fs.String("listen", "", "address to listen on (default 127.0.0.1:$PORT)")
	volume := fs.String("volume", os.Getenv("REDBLACK_VOLUME"), "the data directory (env REDBLACK_VOLUME)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr := *listen
	if addr == "" {
		if os.Getenv("PORT") == "" {
			fmt.Fprintln(os.Stderr, "store: set PORT or --listen")
			return 2
		}
		addr = "127.0.0.1:" + os.Getenv("PORT")
	}
	if *volume == "" {
		fmt.Fprintln(os.Stderr, "store: set REDBLACK_VOLUME or --volume: a store keeps its data in a volume")
		return 2
	}
	s, err := kv.Open(*volume, *schema)
	if err != nil {
		fmt.Fprintf(os.Stderr, "store: %v\n", err)
		return 1
	}
	defer s.Close()
	if s.Torn {
		fmt.Fprintln(os.Stderr, "store: a torn last record (a write never acknowledged) was cut off")
	}
	srv := &http.Server{Addr: addr, Handler: s.Handler(*version), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "store %s (schema %d) listening on %s, %d keys in %s\n", *version, *schema, addr, s.Len(), *volume)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "store: %v\n", err)
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

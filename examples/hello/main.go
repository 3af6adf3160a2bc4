// Command hello is the demo application redblack releases. It listens on
// $PORT (or --listen), answers with its version and serves /healthz; its
// failure modes are set by flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redblack/redblack/examples/hello/app"
)

func main() {
	cfg := app.Config{Version: envOr("REDBLACK_VERSION", "v0"), Instance: envOr("REDBLACK_INSTANCE", "local")}
	listen := flag.String("listen", "", "address to listen on (default 127.0.0.1:$PORT)")
	flag.StringVar(&cfg.Version, "version", cfg.Version, "version to report (env REDBLACK_VERSION)")
	flag.Float64Var(&cfg.ErrorRate, "error-rate", 0, "share of requests answered 500, 0..1")
	flag.DurationVar(&cfg.Latency, "latency", 0, "latency added to every request")
	flag.DurationVar(&cfg.Jitter, "jitter", 0, "uniform jitter around --latency")
	flag.DurationVar(&cfg.FailAfter, "fail-after", 0, "after this long, every request fails while /healthz stays green")
	crashAfter := flag.Duration("crash-after", 0, "exit with status 3 after this long")
	flag.BoolVar(&cfg.FailHealth, "fail-health", false, "/healthz answers 503")
	flag.DurationVar(&cfg.FailHealthAfter, "fail-health-after", 0, "after this long, /healthz answers 503")
	flag.Parse()
	if cfg.ErrorRate < 0 || cfg.ErrorRate > 1 {
		log.Fatalf("hello: --error-rate %v: want 0..1", cfg.ErrorRate)
	}
	addr := *listen
	if addr == "" {
		port := os.Getenv("PORT")
		if port == "" {
			log.Fatal("hello: set PORT or --listen")
		}
		addr = "127.0.0.1:" + port
	}
	srv := &http.Server{Addr: addr, Handler: app.New(cfg, time.Now), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	if *crashAfter > 0 {
		time.AfterFunc(*crashAfter, func() {
			fmt.Fprintf(os.Stderr, "hello: crashing (--crash-after %s)\n", *crashAfter)
			os.Exit(3)
		})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("hello %s listening on %s", cfg.Version, addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("hello: %v", err)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

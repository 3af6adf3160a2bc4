package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redblack/redblack/shared/discovery/lb"
	"github.com/redblack/redblack/shared/subjects"
)

// Main runs hello as a program: it listens on $PORT (or --listen), answers
// with its version and serves /healthz, with failure modes set by flags. It
// returns the exit status. The hello binary and `redblack example hello`
// both call it.
func Main(args []string, stderr io.Writer) int {
	logger := log.New(stderr, "", log.LstdFlags)
	cfg := Config{Version: envOr("REDBLACK_VERSION", "v0"), Instance: envOr("REDBLACK_INSTANCE", "local")}
	fs := flag.NewFlagSet("hello", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "address to listen on (default 127.0.0.1:$PORT)")
	fs.StringVar(&cfg.Version, "version", cfg.Version, "version to report (env REDBLACK_VERSION)")
	fs.Float64Var(&cfg.ErrorRate, "error-rate", 0, "share of requests answered 500, 0..1")
	fs.DurationVar(&cfg.Latency, "latency", 0, "latency added to every request")
	fs.DurationVar(&cfg.Jitter, "jitter", 0, "uniform jitter around --latency")
	fs.Float64Var(&cfg.TailRate, "tail-rate", 0, "share of requests, 0..1, that take --tail-latency more (a slower tail, the same median)")
	fs.DurationVar(&cfg.TailLatency, "tail-latency", 0, "latency added to the --tail-rate share of requests")
	fs.Float64Var(&cfg.DropOrders, "drop-orders", 0, "share of answered requests, 0..1, whose order is lost (hello_orders_total on /metrics does not count it)")
	fs.DurationVar(&cfg.Burn, "burn", 0, "CPU time spent busy on every request")
	fs.DurationVar(&cfg.FailAfter, "fail-after", 0, "after this long, every request fails while /healthz stays green")
	crashAfter := fs.Duration("crash-after", 0, "exit with status 3 after this long")
	fs.BoolVar(&cfg.FailHealth, "fail-health", false, "/healthz answers 503")
	fs.DurationVar(&cfg.FailHealthAfter, "fail-health-after", 0, "after this long, /healthz answers 503")
	grpcMode := fs.Bool("grpc", false, "also serve gRPC (grpc.testing.TestService and grpc.health.v1.Health) over h2c on the same port")
	downstream := fs.String("downstream", "", "SERVICE[,SERVICE]: call these through the discovery client before each answer (NATS from $REDBLACK_SERVER, creds from $REDBLACK_CREDS or $"+lb.CredsEnv+")")
	fs.StringVar(&cfg.Store, "store", "", "SERVICE: pass GET and PUT /kv/KEY to this stateful service, each key to its slot, through the discovery client")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.Service = envOr("REDBLACK_SERVICE", "hello")
	if cfg.ErrorRate < 0 || cfg.ErrorRate > 1 {
		logger.Printf("hello: --error-rate %v: want 0..1", cfg.ErrorRate)
		return 2
	}
	if cfg.DropOrders < 0 || cfg.DropOrders > 1 {
		logger.Printf("hello: --drop-orders %v: want 0..1", cfg.DropOrders)
		return 2
	}
	if cfg.TailRate < 0 || cfg.TailRate > 1 {
		logger.Printf("hello: --tail-rate %v: want 0..1", cfg.TailRate)
		return 2
	}
	var err error
	addr := *listen
	if addr == "" {
		port := os.Getenv("PORT")
		if port == "" {
			logger.Print("hello: set PORT or --listen")
			return 2
		}
		addr = "127.0.0.1:" + port
	}
	if *downstream != "" {
		if cfg.Downstream, err = parseDownstream(*downstream); err != nil {
			logger.Printf("hello: --downstream: %v", err)
			return 2
		}
	}
	called := cfg.Downstream
	if cfg.Store != "" {
		if err := subjects.ValidateService(cfg.Store); err != nil {
			logger.Printf("hello: --store: %v", err)
			return 2
		}
		called = append(slices.Clone(called), cfg.Store)
	}
	if len(called) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		caller, stop, err := lb.FromEnv(ctx, os.LookupEnv, lb.Config{Services: called})
		cancel()
		if err != nil {
			logger.Printf("hello: --downstream/--store: %v", err)
			return 1
		}
		defer stop()
		cfg.Caller, cfg.Keys = caller, caller
		logger.Printf("hello: calling %s through the discovery client %s", strings.Join(called, ", "), caller.ID())
	}
	app := New(cfg, time.Now)
	srv := &http.Server{Addr: addr, Handler: app, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	mode := "HTTP/1.1"
	if *grpcMode {
		h, stop := app.GRPC()
		defer stop()
		srv.Handler = h
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
		mode = "HTTP/1.1, h2c and gRPC"
	}
	if *crashAfter > 0 {
		time.AfterFunc(*crashAfter, func() {
			fmt.Fprintf(stderr, "hello: crashing (--crash-after %s)\n", *crashAfter)
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
	logger.Printf("hello %s listening on %s (%s)", cfg.Version, addr, mode)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Printf("hello: %v", err)
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

package mesh

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/redblack/redblack/dashboard"
	"github.com/redblack/redblack/shared/discovery"
	"github.com/redblack/redblack/shared/prom"
	"github.com/redblack/redblack/shared/topology"
	"github.com/redblack/redblack/tracing"
)

// ObserveConfig is what watches the services from outside them, in the
// one-process up and in up --nodes alike.
type ObserveConfig struct {
	// Admin serves Gatherer on /metrics, and the instances to Prometheus on
	// discovery.PrometheusSDPath ("" for none).
	Admin    string
	Gatherer prometheus.Gatherer
	// UI serves the dashboard ("" for none); Dial connects as a viewer,
	// with the viewer's creds, for the actions the page asks for.
	UI   string
	Dial func(creds []byte) (*nats.Conn, error)
	// Spans, when set, receives each release as an OpenTelemetry trace.
	Spans sdktrace.SpanExporter
	// NC is the admin's connection the dashboard and the traces read with.
	NC  *nats.Conn
	Log zerolog.Logger
}

// Observers are the running admin port, dashboard and release traces.
type Observers struct {
	adminSrv  *http.Server
	adminAddr net.Addr
	uiAddr    net.Addr
	tracer    *tracing.Tracer
}

// Observe starts the observers cfg asks for; they stop with ctx and Close.
func Observe(ctx context.Context, cfg ObserveConfig) (*Observers, error) {
	o := &Observers{}
	if cfg.Admin != "" {
		mux := http.NewServeMux()
		if cfg.NC != nil { // Prometheus finds the instances here (http_sd_configs)
			js, err := jetstream.New(cfg.NC)
			if err != nil {
				return o, fmt.Errorf("mesh: %w", err)
			}
			kv, err := js.KeyValue(ctx, topology.BucketInstances)
			if err != nil {
				return o, fmt.Errorf("mesh: %w", err)
			}
			mux.Handle(discovery.PrometheusSDPath, discovery.PrometheusSD(kv))
		}
		var err error
		if o.adminSrv, o.adminAddr, err = prom.Serve(cfg.Admin, cfg.Gatherer, mux); err != nil {
			return o, fmt.Errorf("mesh: %w", err)
		}
	}
	if cfg.UI != "" {
		d := dashboard.New(dashboard.Config{NC: cfg.NC, Log: cfg.Log.With().Str("component", "dashboard").Logger(), Dial: cfg.Dial})
		if err := d.Run(ctx); err != nil {
			return o, fmt.Errorf("mesh: %w", err)
		}
		addr, err := dashboard.Serve(ctx, cfg.UI, d)
		if err != nil {
			return o, fmt.Errorf("mesh: %w", err)
		}
		o.uiAddr = addr
	}
	if cfg.Spans != nil {
		o.tracer = tracing.New(cfg.Spans, cfg.Log.With().Str("component", "tracing").Logger())
		js, err := jetstream.New(cfg.NC)
		if err != nil {
			return o, fmt.Errorf("mesh: %w", err)
		}
		kv, err := js.KeyValue(ctx, topology.BucketReleases)
		if err != nil {
			return o, fmt.Errorf("mesh: %w", err)
		}
		if err := o.tracer.Follow(ctx, kv); err != nil {
			return o, fmt.Errorf("mesh: %w", err)
		}
	}
	return o, nil
}

// AdminAddr is the admin port's address (nil without one).
func (o *Observers) AdminAddr() net.Addr {
	if o == nil {
		return nil
	}
	return o.adminAddr
}

// UIAddr is the dashboard's address (nil without one).
func (o *Observers) UIAddr() net.Addr {
	if o == nil {
		return nil
	}
	return o.uiAddr
}

// FlushTraces exports the release traces ended so far.
func (o *Observers) FlushTraces(ctx context.Context) error {
	if o == nil || o.tracer == nil {
		return nil
	}
	return o.tracer.Flush(ctx)
}

// Close stops the admin port and exports the traces still held (at most
// 5 s).
func (o *Observers) Close() {
	if o == nil {
		return
	}
	if o.adminSrv != nil {
		o.adminSrv.Close()
	}
	if o.tracer != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = o.tracer.Shutdown(sctx)
		cancel()
	}
}

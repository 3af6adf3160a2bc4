// Package tracing emits each release as one OpenTelemetry trace: a root
// span for the release, from its acceptance to its final phase, and a child
// span per phase, with the canary judge's figures and the outcome as
// attributes. It follows the releases bucket and emits a release's trace
// once the release reaches a final phase, with the phases' own timestamps.
package tracing

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/redblack/redblack/shared/release"
)

// TracerName is the instrumentation scope of the release traces.
const TracerName = "github.com/redblack/redblack/tracing"

// maxRemembered bounds the releases the tracer remembers having traced.
const maxRemembered = 10000

// Tracer turns final release records into traces.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	log      zerolog.Logger

	mu      sync.Mutex
	emitted map[string]release.Phase // release id → the final phase traced
}

// New returns a tracer exporting through exp with a batching processor.
func New(exp sdktrace.SpanExporter, log zerolog.Logger) *Tracer {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	return &Tracer{provider: tp, tracer: tp.Tracer(TracerName), log: log, emitted: map[string]release.Phase{}}
}

// Shutdown flushes the spans not yet exported.
func (t *Tracer) Shutdown(ctx context.Context) error { return t.provider.Shutdown(ctx) }

// Flush exports the spans ended so far.
func (t *Tracer) Flush(ctx context.Context) error { return t.provider.ForceFlush(ctx) }

// Follow watches the releases bucket until ctx ends and traces every
// release that reaches a final phase from now on (the records already final
// when it starts were traced by an earlier run, or predate tracing).
func (t *Tracer) Follow(ctx context.Context, releases jetstream.KeyValue) error {
	err := release.Watch(ctx, releases, t.log, func(r release.Record, replay bool) {
		if !r.Phase.Final() {
			return
		}
		t.mu.Lock()
		done := t.emitted[r.ID] == r.Phase
		if len(t.emitted) >= maxRemembered {
			t.emitted = map[string]release.Phase{}
		}
		t.emitted[r.ID] = r.Phase
		t.mu.Unlock()
		if !replay && !done {
			t.Emit(ctx, r)
		}
	})
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	return nil
}

// Emit records the trace of one release.
func (t *Tracer) Emit(ctx context.Context, r release.Record) {
	if len(r.History) == 0 {
		return
	}
	start, end := r.History[0].At, r.History[len(r.History)-1].At
	ctx, root := t.tracer.Start(ctx, "release "+r.Service+" "+r.Version, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(
			attribute.String("redblack.release.id", r.ID),
			attribute.String("redblack.service", r.Service),
			attribute.String("redblack.version", r.Version),
			attribute.String("redblack.group", r.Group),
			attribute.String("redblack.previous", r.Previous),
			attribute.String("redblack.requested_by", r.RequestedBy),
			attribute.String("redblack.outcome", string(r.Phase)),
			attribute.String("redblack.reason", r.Reason),
		))
	if r.Phase != release.PhaseCompleted {
		root.SetStatus(codes.Error, string(r.Phase)+": "+r.Reason)
	}
	for i := 0; i+1 < len(r.History); i++ {
		h := r.History[i]
		_, span := t.tracer.Start(ctx, string(h.Phase), trace.WithTimestamp(h.At))
		span.SetAttributes(attribute.String("redblack.phase", string(h.Phase)))
		if h.Phase == release.PhaseCanary && r.Report != nil {
			span.SetAttributes(judgeAttributes(r)...)
		}
		span.End(trace.WithTimestamp(r.History[i+1].At))
	}
	root.End(trace.WithTimestamp(end))
	t.log.Debug().Str("release", r.ID).Str("outcome", string(r.Phase)).Msg("release traced")
}

// judgeAttributes are the canary judge's figures: its score, looks and
// confidence, and per metric the groups' figures, the confidence sequence
// and the verdict.
func judgeAttributes(r release.Record) []attribute.KeyValue {
	rep := r.Report
	kv := []attribute.KeyValue{
		attribute.String("redblack.canary.group", r.Canary),
		attribute.String("redblack.canary.baseline", r.Baseline),
		attribute.Float64("redblack.canary.score", rep.Score),
		attribute.Int("redblack.canary.looks", rep.Looks),
		attribute.Float64("redblack.canary.confidence", rep.Confidence),
		attribute.String("redblack.canary.reason", rep.Reason),
	}
	for _, m := range rep.Metrics {
		p := "redblack.canary.metric." + m.Name + "."
		kv = append(kv,
			attribute.String(p+"classification", m.Classification),
			attribute.Float64(p+"baseline", m.BaselineMedian),
			attribute.Float64(p+"canary", m.CanaryMedian),
			attribute.Float64(p+"low", m.Low),
			attribute.Float64(p+"high", m.High),
			attribute.Float64(p+"evidence", m.Peak),
			attribute.Int(p+"baseline_samples", m.BaselineSamples),
			attribute.Int(p+"canary_samples", m.CanarySamples),
		)
	}
	return kv
}

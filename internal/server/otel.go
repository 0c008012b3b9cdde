package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald"
)

// TracingShutdownTimeout bounds the flush of the spans still buffered when
// the program ends.
const TracingShutdownTimeout = 5 * time.Second

// SetupTracing configures the OpenTelemetry SDK and an OTLP exporter from
// the standard OTEL_* environment variables, and installs them as the
// global tracer provider and propagator (which Herald's client, the gateway
// and the CLI use). It does so only when the environment asks for it:
// OTEL_TRACES_EXPORTER=otlp, or OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set while OTEL_TRACES_EXPORTER is
// unset; OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true turn it off.
// The exporter speaks OTLP over HTTP (http/protobuf, the default protocol);
// it reads the endpoint, headers, timeout, compression and certificates
// from OTEL_EXPORTER_OTLP_*. OTEL_SERVICE_NAME (default "herald") and
// OTEL_RESOURCE_ATTRIBUTES describe the process; OTEL_TRACES_SAMPLER and
// OTEL_BSP_* are the SDK's. OTEL_PROPAGATORS may name tracecontext,
// baggage or none (default tracecontext,baggage).
//
// The returned function flushes and stops the exporter (within
// TracingShutdownTimeout); it is a no-op when nothing was set up. An
// environment that names something unsupported is an error naming it.
func SetupTracing(ctx context.Context) (shutdown func(), err error) {
	noop := func() {}
	exporter, err := tracesExporter()
	if err != nil || exporter == "" {
		return noop, err
	}
	prop, err := propagators()
	if err != nil {
		return noop, err
	}
	switch p := firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"); p {
	case "", "http/protobuf":
	case "grpc", "http/json":
		return noop, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported by herald; use http/protobuf (the default) and the collector's HTTP port (4318)", p)
	default:
		return noop, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q is not a protocol; use http/protobuf", p)
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return noop, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "herald"), attribute.String("service.version", herald.ReadBuildInfo().Version)),
		resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return noop, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(prop)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), TracingShutdownTimeout)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}, nil
}

// tracesExporter is "otlp" when the environment asks for traces, else "".
func tracesExporter() (string, error) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return "", nil
	}
	v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))
	if v == "" {
		if firstEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
			return "otlp", nil
		}
		return "", nil
	}
	out := ""
	for _, e := range strings.Split(v, ",") {
		switch e = strings.TrimSpace(e); e {
		case "none":
			return "", nil
		case "otlp":
			out = "otlp"
		default:
			return "", fmt.Errorf("OTEL_TRACES_EXPORTER=%q: herald exports traces with otlp only; use otlp or none", e)
		}
	}
	return out, nil
}

func propagators() (propagation.TextMapPropagator, error) {
	v := strings.TrimSpace(os.Getenv("OTEL_PROPAGATORS"))
	if v == "" {
		v = "tracecontext,baggage"
	}
	var ps []propagation.TextMapPropagator
	for _, p := range strings.Split(v, ",") {
		switch p = strings.TrimSpace(p); p {
		case "tracecontext":
			ps = append(ps, propagation.TraceContext{})
		case "baggage":
			ps = append(ps, propagation.Baggage{})
		case "none":
		default:
			return nil, fmt.Errorf("OTEL_PROPAGATORS=%q: herald supports tracecontext, baggage and none", p)
		}
	}
	return propagation.NewCompositeTextMapPropagator(ps...), nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// WithTraceIDs returns a logger whose records carry trace_id and span_id
// when they are logged with a context that holds a span (slog's *Context
// methods, LogAttrs).
func WithTraceIDs(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(traceHandler); ok {
		return l
	}
	return slog.New(traceHandler{l.Handler()})
}

// traceHandler adds the trace and span ids of a record's context.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}

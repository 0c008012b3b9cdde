package gateway

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald"
)

// Tracing in the gateway (docs/operations.md, "Tracing and metrics"), with
// the tracer provider and propagator of the gateway's herald.Client:
//
//   - a server span per HTTP request, the child of the request's traceparent,
//     named after its route; publishes made under it get the library's
//     producer spans as children, whose context the events carry;
//   - a consumer span per event handed to an SSE or WebSocket client and per
//     webhook delivery ("deliver <topic>"), the child of the producer's
//     context in the event's headers;
//   - a client span per webhook POST, the child of its delivery span, whose
//     context the POST carries in its traceparent header.
//
// With tracing off (herald.Client.Tracing is false) none of this allocates.

// GatewayTracerName is the instrumentation scope of the gateway's spans.
const GatewayTracerName = "github.com/heraldbus/herald/gateway"

var noopSpan = trace.SpanFromContext(context.Background())

// startServerSpan starts the server span of r, returning r with it in its
// context.
func (g *Gateway) startServerSpan(r *http.Request) (*http.Request, trace.Span) {
	if g.c == nil || !g.c.Tracing() {
		return r, noopSpan
	}
	ctx := g.c.Propagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := g.c.TracerProvider().Tracer(GatewayTracerName).Start(ctx, r.Method,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path),
			attribute.String("server.address", r.Host)))
	return r.WithContext(ctx), span
}

// endServerSpan names the span after its route and ends it with the status.
func endServerSpan(span trace.Span, method, route string, status int) {
	if !span.IsRecording() {
		return
	}
	if status == 0 {
		status = http.StatusOK
	}
	// Routes are mux patterns ("POST /v1/topics/{topic}/events"); others
	// are names ("dashboard", "unmatched").
	path, ok := strings.CutPrefix(route, method+" ")
	if !ok {
		path = route
	}
	span.SetName(method + " " + path)
	span.SetAttributes(attribute.String("http.route", path), attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// traceDelivery records the hand-over of m to an SSE or WebSocket client
// (via "sse" or "ws") as a consumer span.
func traceDelivery(c *herald.Client, m *herald.Message, via string) {
	if c == nil || !c.Tracing() {
		return
	}
	_, span := c.StartDeliverySpan(context.Background(), m, via)
	c.EndDeliverySpan(span, nil)
}

// doTraced sends a webhook POST for m under a delivery span and a client
// span, which the request's traceparent names.
func (h *webhookRunner) doTraced(req *http.Request, m *herald.Message) (*http.Response, error) {
	c := h.g.c
	if c == nil || !c.Tracing() {
		return h.client.Do(req)
	}
	ctx, dspan := c.StartDeliverySpan(req.Context(), m, "webhook")
	dspan.SetAttributes(attribute.String("messaging.herald.webhook", h.cfg.Name))
	ctx, cspan := c.TracerProvider().Tracer(GatewayTracerName).Start(ctx, http.MethodPost,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", http.MethodPost), attribute.String("url.full", h.target),
			attribute.String("server.address", req.URL.Host)))
	req = req.WithContext(ctx)
	c.Propagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := h.client.Do(req)
	var derr error
	switch {
	case err != nil:
		cspan.RecordError(err)
		cspan.SetStatus(codes.Error, err.Error())
		derr = err
	default:
		cspan.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if resp.StatusCode >= 300 {
			cspan.SetStatus(codes.Error, strconv.Itoa(resp.StatusCode))
			derr = errStatus(resp.StatusCode)
		}
	}
	cspan.End()
	c.EndDeliverySpan(dspan, derr)
	return resp, err
}

type errStatus int

func (e errStatus) Error() string { return "webhook answered " + strconv.Itoa(int(e)) }

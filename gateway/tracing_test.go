package gateway_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

// An HTTP publish carrying a caller's traceparent, then a library consumer,
// an SSE group client, an SSE live tail and a webhook: every consumer span is in the caller's
// trace, the child of the library's producer span (and linked to it); the
// producer span is the child of the gateway's server span, itself the child
// of the caller's span; the webhook's POST is a client span whose context
// the receiver gets in its traceparent header.
func TestTracingPublishToConsumers(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	got := make(chan string, 4) // traceparent headers the webhook receiver saw
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hook := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get("traceparent"):
		default:
		}
	})}
	go func() { _ = hook.Serve(l) }()
	defer hook.Close()

	c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t),
		TracerProvider: tp, Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := newEnvClient(t, c, gateway.Config{Webhooks: []gateway.Webhook{{Name: "traced", Topic: "orders",
		URL: "http://" + l.Addr().String() + "/hook", Backoff: 20 * time.Millisecond}}})

	// The library consumer, and the SSE client, before the publish.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	handled := make(chan trace.SpanContext, 1)
	sub, err := c.Subscribe(ctx, "orders", "lib", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		handled <- trace.SpanContextFromContext(ctx)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	sse := e.openSSE("/v1/topics/orders/events?group=browser&ack=auto", nil)
	tail := e.openSSE("/v1/topics/orders/events", nil) // a live tail: headers once it follows the topic

	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	e.publish("orders", `{"type":"order.created","data":{"n":1}}`, map[string]string{
		"Content-Type": "application/json", "traceparent": "00-" + callerTrace + "-" + callerSpan + "-01"})

	var hctx trace.SpanContext
	select {
	case hctx = <-handled:
	case <-ctx.Done():
		t.Fatal("library consumer got nothing")
	}
	sse.next(t, "", 10*time.Second)
	tail.next(t, "", 10*time.Second)
	var hookTP string
	select {
	case hookTP = <-got:
	case <-ctx.Done():
		t.Fatal("webhook got nothing")
	}

	// Spans are exported when they end; the SSE and webhook ones end just
	// after their deliveries.
	find := func(pred func(tracetest.SpanStub) bool) (tracetest.SpanStub, bool) {
		for _, s := range exp.GetSpans() {
			if pred(s) {
				return s, true
			}
		}
		return tracetest.SpanStub{}, false
	}
	waitSpan := func(what string, pred func(tracetest.SpanStub) bool) tracetest.SpanStub {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if s, ok := find(pred); ok {
				return s
			}
			if time.Now().After(deadline) {
				var names []string
				for _, s := range exp.GetSpans() {
					names = append(names, s.Name+"/"+s.SpanKind.String())
				}
				t.Fatalf("no %s span; spans: %v", what, names)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	attr := func(s tracetest.SpanStub, k string) string {
		for _, a := range s.Attributes {
			if string(a.Key) == k {
				return a.Value.String()
			}
		}
		return ""
	}
	server := waitSpan("server", func(s tracetest.SpanStub) bool {
		return s.SpanKind == trace.SpanKindServer && s.Name == "POST /v1/topics/{topic}/events"
	})
	producer := waitSpan("producer", func(s tracetest.SpanStub) bool { return s.SpanKind == trace.SpanKindProducer })
	process := waitSpan("library consumer", func(s tracetest.SpanStub) bool {
		return s.SpanKind == trace.SpanKindConsumer && attr(s, "messaging.consumer.group.name") == "lib"
	})
	sseSpan := waitSpan("SSE delivery", func(s tracetest.SpanStub) bool {
		return s.SpanKind == trace.SpanKindConsumer && attr(s, "messaging.herald.via") == "sse" && attr(s, "messaging.consumer.group.name") == "browser"
	})
	tailSpan := waitSpan("SSE live tail delivery", func(s tracetest.SpanStub) bool {
		return s.SpanKind == trace.SpanKindConsumer && attr(s, "messaging.herald.via") == "sse" && attr(s, "messaging.consumer.group.name") == ""
	})
	whSpan := waitSpan("webhook delivery", func(s tracetest.SpanStub) bool {
		return s.SpanKind == trace.SpanKindConsumer && attr(s, "messaging.herald.via") == "webhook"
	})
	client := waitSpan("webhook client", func(s tracetest.SpanStub) bool { return s.SpanKind == trace.SpanKindClient })

	if server.SpanContext.TraceID().String() != callerTrace || server.Parent.SpanID().String() != callerSpan {
		t.Errorf("server span: trace %s parent %s, want the caller's %s/%s", server.SpanContext.TraceID(), server.Parent.SpanID(), callerTrace, callerSpan)
	}
	if producer.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("producer span's parent = %s, want the server span %s", producer.Parent.SpanID(), server.SpanContext.SpanID())
	}
	if producer.Name != "publish orders" || attr(producer, "messaging.system") != "herald" || attr(producer, "messaging.destination.name") != "orders" ||
		attr(producer, "messaging.operation.type") != "send" {
		t.Errorf("producer span %q attributes %v", producer.Name, producer.Attributes)
	}
	for name, s := range map[string]tracetest.SpanStub{"library": process, "sse": sseSpan, "sse tail": tailSpan, "webhook": whSpan} {
		if s.SpanContext.TraceID().String() != callerTrace {
			t.Errorf("%s consumer span in trace %s, want %s", name, s.SpanContext.TraceID(), callerTrace)
		}
		if s.Parent.SpanID() != producer.SpanContext.SpanID() {
			t.Errorf("%s consumer span's parent = %s, want the producer span %s", name, s.Parent.SpanID(), producer.SpanContext.SpanID())
		}
		if len(s.Links) != 1 || s.Links[0].SpanContext.SpanID() != producer.SpanContext.SpanID() {
			t.Errorf("%s consumer span's links = %v, want the producer span", name, s.Links)
		}
		if attr(s, "messaging.destination.name") != "orders" || attr(s, "messaging.message.id") == "" || attr(s, "messaging.destination.partition.id") != "0" {
			t.Errorf("%s consumer span attributes %v", name, s.Attributes)
		}
	}
	if attr(process, "messaging.operation.type") != "process" {
		t.Errorf("library consumer span: operation type %q, want process", attr(process, "messaging.operation.type"))
	}
	if hctx.SpanID() != process.SpanContext.SpanID() {
		t.Errorf("the handler's context holds span %s, want its consumer span %s", hctx.SpanID(), process.SpanContext.SpanID())
	}
	if client.Parent.SpanID() != whSpan.SpanContext.SpanID() {
		t.Errorf("webhook client span's parent = %s, want the delivery span %s", client.Parent.SpanID(), whSpan.SpanContext.SpanID())
	}
	if want := "00-" + callerTrace + "-" + client.SpanContext.SpanID().String() + "-01"; hookTP != want {
		t.Errorf("webhook receiver's traceparent = %q, want %q (the client span)", hookTP, want)
	}
}

// With a no-op tracer provider nothing is traced and the event keeps the
// caller's traceparent untouched.
func TestTracingOffKeepsHeaders(t *testing.T) {
	t.Parallel()
	c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Tracing() {
		t.Fatal("Tracing() with the unset global provider = true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if _, err := c.Publish(ctx, "t", herald.Event{Headers: map[string]string{"traceparent": tp}}); err != nil {
		t.Fatal(err)
	}
	evs, err := c.Events(ctx, "t", herald.Query{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Headers["traceparent"] != tp {
		t.Fatalf("stored events %+v, want the caller's traceparent kept", evs)
	}
}

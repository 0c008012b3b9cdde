package herald_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/heraldbus/herald"
)

// Publish, PublishAsync and PublishBatch each make a producer span whose
// context the events carry (the caller's header maps untouched); each
// handler call is a consumer span, the child of its event's producer span.
func TestTracingProducerAndConsumerSpans(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	c := newClient(t, func(cfg *herald.Config) {
		cfg.TracerProvider, cfg.Propagator = tp, propagation.TraceContext{}
	})
	ctx := ctxT(t, 30*time.Second)
	if !c.Tracing() {
		t.Fatal("Tracing() = false with an SDK provider")
	}
	hdr := map[string]string{"app": "x"}
	if _, err := c.Publish(ctx, "tr", herald.Event{Key: "k", Headers: hdr, Data: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishAsync(ctx, "tr", herald.Event{Key: "k", Headers: hdr, Data: []byte("2")}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishBatch(ctx, "tr", []herald.Event{{Key: "k", Headers: hdr, Data: []byte("3")}, {Key: "k", Data: []byte("4")}}); err != nil {
		t.Fatal(err)
	}
	if len(hdr) != 1 {
		t.Fatalf("the caller's headers were written: %v", hdr)
	}
	producers := map[trace.SpanID]int{} // span -> events it covers
	for _, s := range exp.GetSpans() {
		if s.SpanKind == trace.SpanKindProducer {
			producers[s.SpanContext.SpanID()] = 1
			for _, a := range s.Attributes {
				if a.Key == "messaging.batch.message_count" {
					producers[s.SpanContext.SpanID()] = int(a.Value.AsInt64())
				}
			}
		}
	}
	if len(producers) != 3 {
		t.Fatalf("%d producer spans, want 3 (Publish, PublishAsync, PublishBatch)", len(producers))
	}

	parents := make(chan trace.SpanContext, 4)
	sub, err := c.Subscribe(ctx, "tr", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		if m.Headers["traceparent"] == "" {
			t.Errorf("event %s has no traceparent: %v", m.Data, m.Headers)
		}
		parents <- trace.SpanContextFromContext(ctx)
		return nil
	}), herald.From(herald.StartBeginning))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	for range 4 {
		select {
		case sc := <-parents:
			if !sc.IsValid() {
				t.Fatal("handler context holds no span")
			}
		case <-ctx.Done():
			t.Fatal("handler not called 4 times")
		}
	}
	sub.Stop()
	<-sub.Done()
	covered := map[trace.SpanID]int{}
	for _, s := range exp.GetSpans() {
		if s.SpanKind != trace.SpanKindConsumer {
			continue
		}
		if _, ok := producers[s.Parent.SpanID()]; !ok {
			t.Errorf("consumer span %s: parent %s is no producer span", s.Name, s.Parent.SpanID())
		}
		covered[s.Parent.SpanID()]++
	}
	for id, n := range producers {
		if covered[id] != n {
			t.Errorf("producer span %s: %d consumer spans, want %d", id, covered[id], n)
		}
	}
}

// A no-op provider turns tracing off: no traceparent is added.
func TestTracingNoopProvider(t *testing.T) {
	t.Parallel()
	c := newClient(t, func(cfg *herald.Config) { cfg.TracerProvider = noop.NewTracerProvider() })
	ctx := ctxT(t, 10*time.Second)
	if c.Tracing() {
		t.Fatal("Tracing() = true with a no-op provider")
	}
	if _, err := c.Publish(ctx, "off", herald.Event{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	evs, err := c.Events(ctx, "off", herald.Query{})
	if err != nil || len(evs) != 1 {
		t.Fatalf("events %v %v", evs, err)
	}
	if tp := evs[0].Headers["traceparent"]; tp != "" {
		t.Fatalf("traceparent %q added with tracing off", tp)
	}
}

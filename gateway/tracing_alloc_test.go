package gateway

import (
	"context"
	"testing"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// With tracing off, the delivery span of a live tail's event costs no
// allocation.
func TestTraceDeliveryOffAllocatesNothing(t *testing.T) {
	c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Tracing() {
		t.Skip("a global tracer provider is set")
	}
	m := &herald.Message{Event: herald.Event{ID: "e", Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		Topic: "t", Position: "1-0"}
	if n := testing.AllocsPerRun(100, func() { traceDelivery(c, m, "sse") }); n != 0 {
		t.Fatalf("traceDelivery with tracing off: %v allocations, want 0", n)
	}
}

package herald

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/heraldbus/herald/internal/redistest"
)

// The unset global provider is recognised (else tracing would stay on, and
// allocate, in every program that never sets one).
func TestTracingInitialGlobalRecognised(t *testing.T) {
	if initialGlobalTP == nil {
		t.Fatal("the global tracer provider's default was not recognised (OTel renamed its type?)")
	}
}

// With the global provider unset, a publish allocates exactly what it does
// with a no-op provider: the instrumentation costs nothing when off.
func TestTracingOffAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	allocs := func(cfg Config) float64 {
		cfg.URL, cfg.Namespace = redistest.URL(t), redistest.Namespace(t)
		c, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.Tracing() {
			t.Fatal("tracing on")
		}
		ev := Event{Key: "k", Data: []byte("x")}
		if _, err := c.Publish(ctx, "alloc", ev); err != nil { // loads the topic
			t.Fatal(err)
		}
		return testing.AllocsPerRun(200, func() {
			if _, err := c.Publish(ctx, "alloc", ev); err != nil {
				t.Fatal(err)
			}
		})
	}
	// AllocsPerRun counts the whole process's allocations: goroutines of
	// earlier tests can add one now and then, so each side takes its
	// smallest of three measurements.
	least := func(cfg Config) float64 {
		m := allocs(cfg)
		for range 2 {
			m = min(m, allocs(cfg))
		}
		return m
	}
	global, off := least(Config{}), least(Config{TracerProvider: noop.NewTracerProvider()})
	if global > off {
		t.Fatalf("Publish allocates %.1f times with the unset global provider, %.1f with a no-op one", global, off)
	}
	t.Logf("Publish: %.1f allocations with the unset global provider, %.1f with a no-op one", global, off)
}

package herald

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
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

// With the global provider unset, a publish allocates what it does with a
// no-op provider, and well short of what a recording provider costs: the
// instrumentation costs nothing when off.
func TestTracingOffAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	allocs := func(cfg Config, wantOn bool) float64 {
		cfg.URL, cfg.Namespace = redistest.URL(t), redistest.Namespace(t)
		c, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.Tracing() != wantOn {
			t.Fatalf("tracing on = %v, want %v", c.Tracing(), wantOn)
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
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer func() { _ = sdk.Shutdown(ctx) }()
	// AllocsPerRun counts the whole process's allocations, and how the
	// writer goroutine batches (so what the runtime allocates for its
	// wake-ups) depends on the machine's load: each side takes its smallest
	// of three measurements, taken in turns, and the sides are compared
	// with half of what a recording span costs as the margin.
	global, off, on := allocs(Config{}, false), allocs(Config{TracerProvider: noop.NewTracerProvider()}, false), allocs(Config{TracerProvider: sdk}, true)
	for range 2 {
		global = min(global, allocs(Config{}, false))
		off = min(off, allocs(Config{TracerProvider: noop.NewTracerProvider()}, false))
		on = min(on, allocs(Config{TracerProvider: sdk}, true))
	}
	if on-off < 4 {
		t.Fatalf("a recording span costs only %.1f allocations per Publish (%.1f against %.1f): the comparison below means nothing", on-off, on, off)
	}
	if global > off+(on-off)/2 {
		t.Fatalf("Publish allocates %.1f times with the unset global provider, %.1f with a no-op one, %.1f with a recording one", global, off, on)
	}
	t.Logf("Publish: %.1f allocations with the unset global provider, %.1f with a no-op one, %.1f with a recording one", global, off, on)
}

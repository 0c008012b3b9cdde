package herald

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Slots never let more than max holders in at once, wake every waiter as
// slots come back (no lost wake-up), and give up a wait when its context
// ends.
func TestSlotsBoundAndWake(t *testing.T) {
	const max, goroutines, rounds = 4, 16, 2000
	s := newSlots(max)
	var inside, most atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range goroutines {
		wg.Go(func() {
			for range rounds {
				if err := s.take(ctx); err != nil {
					t.Error(err)
					return
				}
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				inside.Add(-1)
				s.give(1)
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > max || m < 1 {
		t.Fatalf("%d holders at once, want 1..%d", m, max)
	}
	if !s.w.TryAcquire(max) {
		t.Fatal("slots still used after every give")
	}
	s.give(max)

	// Full: a take waits until its context ends, and a give in bulk lets
	// waiters in.
	for range max {
		if err := s.take(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	short, stop := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer stop()
	if err := s.take(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("take on full slots = %v, want the context's deadline", err)
	}
	got := make(chan error, 2)
	for range 2 {
		go func() { got <- s.take(ctx) }()
	}
	s.give(2) // before or after they wait: both get in
	for range 2 {
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("a waiter was not woken by the give")
		}
	}
	if s.w.TryAcquire(1) {
		t.Fatal("a slot was free after the waiters took the two given back")
	}
	s.give(0) // nothing
}

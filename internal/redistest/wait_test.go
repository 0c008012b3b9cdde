package redistest

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestPollReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	start := time.Now()
	if !Poll(5*time.Second, func() bool { return n.Add(1) >= 5 }) {
		t.Fatal("Poll gave up on a condition that became true")
	}
	if got := n.Load(); got != 5 {
		t.Fatalf("cond called %d times, want 5", got)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Poll took %s for a condition true on the 5th call", el)
	}
}

func TestPollGivesUpAtTheDeadline(t *testing.T) {
	t.Parallel()
	start := time.Now()
	if Poll(50*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll reported success for a condition that never held")
	}
	if el := time.Since(start); el < 50*time.Millisecond || el > 2*time.Second {
		t.Fatalf("Poll gave up after %s, want about 50ms", el)
	}
}

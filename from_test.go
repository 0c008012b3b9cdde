package herald_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldbus/herald"
)

// TestSubscribeFromTimeStartsAtEventsAtOrAfterIt: a new group created by
// Subscribe with FromTime gets exactly the events stored at or after the
// time, on every partition; an existing group keeps its position.
func TestSubscribeFromTimeStartsAtEventsAtOrAfterIt(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	if err := c.CreateTopic(ctx, "t", herald.TopicConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	pos := publishN(t, ctx, c, "t", "e", 12)
	var ms int64
	if _, err := fmt.Sscanf(pos[7].ID, "%d-", &ms); err != nil {
		t.Fatal(err)
	}
	got := make(chan arrival, 100)
	s := collect(t, ctx, c, "t", "from-time", got, herald.FromTime(time.UnixMilli(ms)))
	out := drainTo(t, ctx, got, 5, 300*time.Millisecond)
	seen := map[string]bool{}
	for _, d := range out {
		seen[d] = true
	}
	for i := 7; i < 12; i++ {
		if !seen[fmt.Sprint("e", i)] {
			t.Fatalf("FromTime(event 7's time): got %v, want e7..e11", out)
		}
	}
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// The group exists now: FromTime(beginning of time) does not move it.
	publishN(t, ctx, c, "t", "late", 1)
	collect(t, ctx, c, "t", "from-time", got, herald.FromTime(time.UnixMilli(1)))
	if out := drainTo(t, ctx, got, 1, 300*time.Millisecond); out[0] != "late0" {
		t.Fatalf("an existing group moved: %v", out)
	}
}

// TestSubscribeFromPositionStartsThere: FromTarget(ToPosition) starts that
// partition at the position and the others at the beginning.
func TestSubscribeFromPositionStartsThere(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	pos := publishN(t, ctx, c, "t", "e", 5) // default topic: one partition
	got := make(chan arrival, 100)
	collect(t, ctx, c, "t", "from-pos", got, herald.FromTarget(herald.ToPosition(pos[3])))
	out := drainTo(t, ctx, got, 2, 300*time.Millisecond)
	// Keyless events have no order: compare as a set.
	if !(out[0] == "e3" && out[1] == "e4") && !(out[0] == "e4" && out[1] == "e3") {
		t.Fatalf("FromTarget(position of e3): %v, want e3 and e4", out)
	}
}

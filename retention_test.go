package herald_test

import (
	"context"
	"testing"
	"time"

	"github.com/heraldbus/herald"
)

func topicLength(t *testing.T, ctx context.Context, c *herald.Client, topic string) int64 {
	t.Helper()
	ti, err := c.TopicInfo(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	return ti.Length
}

func lossOf(t *testing.T, ctx context.Context, c *herald.Client, topic, group string) herald.GroupLoss {
	t.Helper()
	ls, err := c.GroupLosses(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.Group == group {
			return l
		}
	}
	t.Fatalf("group %q not in %+v", group, ls)
	return herald.GroupLoss{}
}

func TestTrimAckedKeepsWhatASlowGroupHasNotRead(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	if err := c.CreateTopic(ctx, "t", herald.TopicConfig{Partitions: 2, TrimAcked: true}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"fast", "slow"} {
		if err := c.CreateGroup(ctx, "t", g, herald.ToBeginning()); err != nil {
			t.Fatal(err)
		}
	}
	publishN(t, ctx, c, "t", "e", 10)
	got := make(chan arrival, 100)
	fast := collect(t, ctx, c, "t", "fast", got)
	drainTo(t, ctx, got, 10, 50*time.Millisecond)
	if err := fast.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := c.RetainNow(ctx, "t"); err != nil || n != 0 {
		t.Fatalf("trimmed %d (%v) while the slow group had read nothing", n, err)
	}
	if n := topicLength(t, ctx, c, "t"); n != 10 {
		t.Fatalf("length %d, want 10 kept for the slow group", n)
	}
	slow := collect(t, ctx, c, "t", "slow", got)
	if out := drainTo(t, ctx, got, 10, 50*time.Millisecond); len(out) != 10 {
		t.Fatalf("slow group got %v", out)
	}
	if err := slow.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// Both groups acknowledged everything: trimmed, by the explicit pass or
	// by the movers' own pass (about once a second).
	if _, err := c.RetainNow(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if n := topicLength(t, ctx, c, "t"); n != 0 {
		t.Fatalf("length %d after both groups acknowledged, want 0", n)
	}
	if l := lossOf(t, ctx, c, "t", "slow"); l.TrimmedUnread+l.TrimmedPending != 0 {
		t.Fatalf("acked-only trimming counted losses: %+v", l)
	}
}

func TestHardCapLossesCountedForSlowGroup(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 60*time.Second)
	if err := c.CreateTopic(ctx, "t", herald.TopicConfig{Partitions: 1, MaxLen: 100, TrimAcked: true}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"fast", "slow"} {
		if err := c.CreateGroup(ctx, "t", g, herald.ToBeginning()); err != nil {
			t.Fatal(err)
		}
	}
	batch := func(n int) {
		evs := make([]herald.Event, n)
		for i := range evs {
			evs[i] = herald.Event{Data: []byte("x")}
		}
		if _, err := c.PublishBatch(ctx, "t", evs); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan arrival, 2000)
	collect(t, ctx, c, "t", "fast", got, herald.ReadBatch(500))
	batch(20)
	drainTo(t, ctx, got, 20, 0)
	// The slow group reads a few and stops without acknowledging them.
	started := make(chan struct{}, 100)
	s, err := c.Subscribe(ctx, "t", "slow", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}), herald.Concurrency(1), herald.ReadBatch(5), herald.MaxInFlight(5))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	s.Stop()
	<-s.Done()
	pending := pendingOf(ctx, c, "t", "slow")
	if pending <= 0 {
		t.Fatalf("slow group has nothing pending")
	}
	if _, err := c.RetainNow(ctx, "t"); err != nil { // the first pass remembers where the stream starts
		t.Fatal(err)
	}
	for range 10 { // the fast group keeps up: the cap takes nothing it has not handled
		batch(100)
		drainTo(t, ctx, got, 100, 0)
		waitFor(t, 5*time.Second, "the fast group's acks", func() bool { return pendingOf(ctx, c, "t", "fast") == 0 })
	}
	if _, err := c.RetainNow(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	length := topicLength(t, ctx, c, "t")
	if length >= 1020-pending || length < 100 {
		t.Fatalf("length %d: MaxLen 100 should have trimmed the slow group's events", length)
	}
	l := lossOf(t, ctx, c, "t", "slow")
	if l.TrimmedPending != pending || l.TrimmedUnread != 1020-pending-length {
		t.Fatalf("slow group's losses %+v, want %d pending and %d unread (length %d)", l, pending, 1020-pending-length, length)
	}
	if f := lossOf(t, ctx, c, "t", "fast"); f.TrimmedPending+f.TrimmedUnread != 0 {
		t.Fatalf("fast group handled everything but lost %+v", f)
	}
	// Counted once: another pass adds nothing.
	if _, err := c.RetainNow(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if l2 := lossOf(t, ctx, c, "t", "slow"); l2 != l {
		t.Fatalf("a second pass changed the counts: %+v then %+v", l, l2)
	}
}

// pendingOf is the group's pending count (-1 when it cannot be read).
func pendingOf(ctx context.Context, c *herald.Client, topic, group string) int64 {
	gs, err := c.Groups(ctx, topic)
	if err != nil {
		return -1
	}
	for _, g := range gs {
		if g.Name == group {
			return g.Pending
		}
	}
	return -1
}

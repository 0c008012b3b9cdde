package herald_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/heraldbus/herald"
)

// publishN publishes n keyless events "<prefix><i>" to topic, spaced so that
// their stream positions fall in distinct milliseconds.
func publishN(t *testing.T, ctx context.Context, c *herald.Client, topic, prefix string, n int) []herald.Position {
	t.Helper()
	out := make([]herald.Position, n)
	for i := range n {
		pos, err := c.Publish(ctx, topic, herald.Event{Data: []byte(fmt.Sprint(prefix, i))})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = pos
		time.Sleep(3 * time.Millisecond) // not a condition: events a few ms apart give seeks distinct times
	}
	return out
}

// drainTo reads arrivals until want distinct ones came or ctx ends, then
// waits quiet for anything extra.
func drainTo(t *testing.T, ctx context.Context, got <-chan arrival, want int, quiet time.Duration) []string {
	t.Helper()
	var out []string
	for len(out) < want {
		select {
		case a := <-got:
			out = append(out, a.data)
		case <-ctx.Done():
			t.Fatalf("got %d of %d: %v", len(out), want, out)
		}
	}
	select {
	case a := <-got:
		t.Fatalf("got %q beyond the %d expected (%v)", a.data, want, out)
	case <-time.After(quiet):
	}
	return out
}

func TestSeekToTimeReplaysEventsAtOrAfterIt(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	if err := c.CreateTopic(ctx, "t", herald.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateGroup(ctx, "t", "g", herald.ToBeginning()); err != nil {
		t.Fatal(err)
	}
	pos := publishN(t, ctx, c, "t", "e", 10)
	got := make(chan arrival, 100)
	s := collect(t, ctx, c, "t", "g", got)
	drainTo(t, ctx, got, 10, 100*time.Millisecond)
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// The time of event 6's stream position: events 6..9 are at or after it.
	var ms int64
	if _, err := fmt.Sscanf(pos[6].ID, "%d-", &ms); err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(ms)
	res, err := c.SeekGroup(ctx, "t", "g", herald.ToTime(at))
	if err != nil || len(res.Partitions) != 2 || res.Dropped != 0 {
		t.Fatalf("seek: %+v %v", res, err)
	}
	collect(t, ctx, c, "t", "g", got)
	out := drainTo(t, ctx, got, 4, 300*time.Millisecond)
	seen := map[string]bool{}
	for _, d := range out {
		seen[d] = true
	}
	for i := 6; i < 10; i++ {
		if !seen[fmt.Sprint("e", i)] {
			t.Fatalf("replay after seeking to %v: %v, want e6..e9", at, out)
		}
	}
}

func TestSeekToEndSkipsBacklogAndDropsPending(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	if err := c.CreateGroup(ctx, "t", "g", herald.ToEnd()); err != nil {
		t.Fatal(err)
	}
	publishN(t, ctx, c, "t", "old", 6)
	// A consumer reads the backlog and stops without handling it: pending.
	started := make(chan struct{}, 10)
	s, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}), herald.Concurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	s.Stop()
	<-s.Done()
	gs, err := c.Groups(ctx, "t")
	if err != nil || len(gs) != 1 || gs[0].Pending == 0 {
		t.Fatalf("groups before the seek: %+v %v", gs, err)
	}
	pending := gs[0].Pending
	res, err := c.SeekGroup(ctx, "t", "g", herald.ToEnd())
	if err != nil || res.Dropped != pending {
		t.Fatalf("seek to end: %+v %v, want %d dropped", res, err, pending)
	}
	if gs, _ := c.Groups(ctx, "t"); gs[0].Pending != 0 {
		t.Fatalf("pending after the seek: %+v", gs[0])
	}
	got := make(chan arrival, 100)
	collect(t, ctx, c, "t", "g", got)
	publishN(t, ctx, c, "t", "new", 1)
	if out := drainTo(t, ctx, got, 1, 300*time.Millisecond); out[0] != "new0" {
		t.Fatalf("after seeking to the end got %v, want only new0", out)
	}
	if _, err := c.SeekGroup(ctx, "t", "nosuch", herald.ToEnd()); !errors.Is(err, herald.ErrGroupNotFound) {
		t.Fatalf("seek of a missing group: %v", err)
	}
	if _, err := herald.ParseSeekTarget("yesterday"); !errors.Is(err, herald.ErrInvalid) {
		t.Fatalf("bad target: %v", err)
	}
}

func TestRunningSubscriptionFollowsSeek(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	got := make(chan arrival, 100)
	collect(t, ctx, c, "t", "g", got)
	publishN(t, ctx, c, "t", "e", 5)
	drainTo(t, ctx, got, 5, 50*time.Millisecond)
	// Back to the beginning while the consumer runs: it delivers all five again.
	start := time.Now()
	if _, err := c.SeekGroup(ctx, "t", "g", herald.ToBeginning()); err != nil {
		t.Fatal(err)
	}
	out := drainTo(t, ctx, got, 5, 300*time.Millisecond)
	t.Logf("replayed %v %s after the seek", out, time.Since(start))
	// Forward to the end with a backlog published meanwhile: nothing of it.
	if _, err := c.SeekGroup(ctx, "t", "g", herald.ToEnd()); err != nil {
		t.Fatal(err)
	}
	publishN(t, ctx, c, "t", "x", 1)
	if out := drainTo(t, ctx, got, 1, 300*time.Millisecond); out[0] != "x0" {
		t.Fatalf("after seeking to the end got %v, want x0", out)
	}
}

func FuzzParseSeekTarget(f *testing.F) {
	for _, s := range []string{"beginning", "end", "2026-01-02T15:04:05Z", "1/1700000000000-3", "17-0", "0", "$", "x", "1/", "-1/2-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		target, err := herald.ParseSeekTarget(s)
		if err != nil {
			if !errors.Is(err, herald.ErrInvalid) {
				t.Fatalf("%q: error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		again, err := herald.ParseSeekTarget(target.String())
		if err != nil || again.String() != target.String() {
			t.Fatalf("%q -> %q -> %q, %v", s, target, again, err)
		}
	})
}

package herald_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// Two clients with the same ProducerID must not share idempotency state: the
// second client's first batch is a new batch, not a replay of the first's.
func TestFixedProducerIDDoesNotReplayAnotherClient(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	ctx := ctxT(t, 10*time.Second)
	positions := map[string]bool{}
	for i, data := range []string{"first", "second"} {
		c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: ns, ProducerID: "billing-service"})
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.Publish(ctx, "t", herald.Event{Data: []byte(data)})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if positions[p.ID] {
			t.Fatalf("client %d got the position of an earlier client's event: %v", i, p)
		}
		positions[p.ID] = true
	}
	c := newClient(t, func(cfg *herald.Config) { cfg.Namespace = ns })
	evs, err := c.Events(ctx, "t", herald.Query{})
	if err != nil || len(evs) != 2 || string(evs[1].Data) != "second" {
		t.Fatalf("stored %d events (%v), want both", len(evs), err)
	}
}

// A caller-set id without a key always goes to the same partition, so it is
// deduplicated on a topic with many partitions too.
func TestCallerIDDeduplicatedAcrossPartitions(t *testing.T) {
	t.Parallel()
	c := newClient(t, func(cfg *herald.Config) { cfg.DefaultTopic.Partitions = 4 })
	ctx := ctxT(t, 10*time.Second)
	var first herald.Position
	for i := 0; i < 6; i++ {
		p, err := c.Publish(ctx, "t", herald.Event{ID: "evt-42", Data: []byte("same")})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		} else if p.ID != first.ID || p.Partition != first.Partition || !p.Duplicate {
			t.Fatalf("publish %d = %+v, want the first position %+v marked duplicate", i, p, first)
		}
	}
	if ti, _ := c.TopicInfo(ctx, "t"); ti.Length != 1 {
		t.Fatalf("stored %d copies, want 1", ti.Length)
	}
}

func TestGroupsOfAFreshTopic(t *testing.T) {
	t.Parallel()
	c := newClient(t, func(cfg *herald.Config) { cfg.DefaultTopic.Partitions = 3 })
	ctx := ctxT(t, 10*time.Second)
	if err := c.CreateTopic(ctx, "fresh", herald.TopicConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	gs, err := c.Groups(ctx, "fresh")
	if err != nil || len(gs) != 0 {
		t.Fatalf("groups of a fresh topic = %v, %v; want none and no error", gs, err)
	}
}

// A retried event keeps its time (an event without an explicit time takes it
// from its original position, not from the retry stream).
func TestRetryKeepsEventTime(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	times := make(chan time.Time, 3)
	_, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		times <- m.Time
		if m.Attempt == 1 {
			return errors.New("once")
		}
		return nil
	}), herald.Backoff(300*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	t1, t2 := <-times, <-times
	if !t1.Equal(t2) {
		t.Fatalf("first delivery time %v, retry time %v: the retry changed the event's time", t1, t2)
	}
}

// A handler that returns ErrRelease hands the event back: another consumer
// of the group takes it at once, and it is not counted as an attempt.
func TestErrReleaseHandsBack(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	var releasedBy atomic.Int32
	_, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		releasedBy.Add(1)
		return herald.ErrRelease
	}), herald.Consumer("busy"), herald.VisibilityTimeout(300*time.Millisecond), herald.Unordered())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the first consumer to release", func() bool { return releasedBy.Load() > 0 })
	got := make(chan *herald.Message, 1)
	_, err = c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		select {
		case got <- m:
		default:
		}
		return nil
	}), herald.Consumer("free"), herald.VisibilityTimeout(300*time.Millisecond), herald.Unordered())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Attempt != 1 {
			t.Fatalf("released event arrived as attempt %d, want 1", m.Attempt)
		}
	case <-ctx.Done():
		t.Fatal("released event never reached the other consumer")
	}
}

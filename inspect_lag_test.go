package herald_test

import (
	"context"
	"testing"
	"time"

	"github.com/heraldbus/herald"
)

// TestGroupLagAge: a group that has not read an event reports its lag in
// time as the age of that event (the first one after its position), per
// partition and for the group; a group that read everything reports 0.
func TestGroupLagAge(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := newClient(t)
	if err := c.CreateTopic(ctx, "lagging", herald.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 4)
	sub, err := c.Subscribe(ctx, "lagging", "slow", herald.HandlerFunc(func(context.Context, *herald.Message) error {
		done <- struct{}{}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "lagging", herald.Event{Data: []byte("read")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the first event was not handled")
	}
	if err := sub.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	gs, err := c.Groups(ctx, "lagging")
	if err != nil || len(gs) != 1 || gs[0].Lag != 0 || gs[0].LagAge != 0 {
		t.Fatalf("caught-up group: %+v, %v", gs, err)
	}
	before := time.Now()
	if _, err := c.Publish(ctx, "lagging", herald.Event{Data: []byte("unread 1")}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if _, err := c.Publish(ctx, "lagging", herald.Event{Data: []byte("unread 2")}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	gs, err = c.Groups(ctx, "lagging")
	end := time.Now()
	if err != nil || len(gs) != 1 || gs[0].Lag != 2 || len(gs[0].Partitions) != 1 {
		t.Fatalf("lagging group: %+v, %v", gs, err)
	}
	// The age is measured from the first unread event's stream id (its
	// milliseconds, taken between before and after), at a moment between
	// start and end.
	lo, hi := start.Sub(after)-time.Millisecond, end.Sub(before)+time.Millisecond
	if a := gs[0].LagAge; a < lo || a > hi || a <= 0 {
		t.Errorf("LagAge = %v, want within [%v, %v]", a, lo, hi)
	}
	if p := gs[0].Partitions[0]; p.LagAge != gs[0].LagAge {
		t.Errorf("partition LagAge %v, group %v", p.LagAge, gs[0].LagAge)
	}
}

package herald_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// A topic deleted and created again with fewer partitions by one client
// is seen by another client that had it cached: at once when that client
// creates it too, and within seconds otherwise. Its publishes never go to
// partitions the topic no longer has.
func TestTopicRecreatedElsewhereReplacesCache(t *testing.T) {
	t.Parallel()
	a := newClient(t)
	b, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: a.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := ctxT(t, time.Minute)
	for _, name := range []string{"created-again", "cached-only"} {
		if err := a.CreateTopic(ctx, name, herald.TopicConfig{Partitions: 6}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(ctx, name, herald.Event{Data: []byte("x")}, herald.ToPartition(5)); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteTopic(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := a.CreateTopic(ctx, name, herald.TopicConfig{Partitions: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.CreateTopic(ctx, "created-again", herald.TopicConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, "created-again", herald.Event{Data: []byte("x")}, herald.ToPartition(5)); !errors.Is(err, herald.ErrInvalid) {
		t.Fatalf("publish to partition 5 of the 3-partition topic after CreateTopic: %v, want ErrInvalid", err)
	}
	waitFor(t, 15*time.Second, "the other client to drop its stale layout", func() bool {
		_, err := b.Publish(ctx, "cached-only", herald.Event{Data: []byte("x")}, herald.ToPartition(5))
		return errors.Is(err, herald.ErrInvalid)
	})
	for i := range 30 {
		p, err := b.Publish(ctx, "cached-only", herald.Event{Key: strconv.Itoa(i), Data: []byte("k")})
		if err != nil || p.Partition >= 3 {
			t.Fatalf("keyed publish after the recreate: %+v %v, want a partition below 3", p, err)
		}
	}
}

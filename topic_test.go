package herald_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// A topic deleted and created again with fewer partitions by one client
// is seen by another client that had it cached: at once when that client
// creates it too, and within seconds otherwise. Its publishes never go to
// partitions the topic no longer has.
func TestTopicRecreatedElsewhereReplacesCache(t *testing.T) {
	t.Parallel()
	a, b := twoClients(t)
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

// A topic deleted by another client stays deleted: a subscription to it
// ends with ErrTopicNotFound instead of bringing the topic back (a Redis
// restart without persistence, which leaves no tombstone, still is
// recovered from: TestSubscriptionSurvivesRedisRestart), and a client that
// cached it drops its layout, so that its next publish creates the topic
// anew.
func TestTopicDeletedElsewhereStaysDeleted(t *testing.T) {
	t.Parallel()
	a, b := twoClients(t)
	ctx := ctxT(t, time.Minute)
	if err := a.CreateTopic(ctx, "gone", herald.TopicConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	ti, err := a.TopicInfo(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := b.Subscribe(ctx, "gone", "g", herald.HandlerFunc(func(context.Context, *herald.Message) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	if _, err := b.Publish(ctx, "gone", herald.Event{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the event handled", func() bool { return sub.Stats().Handled == 1 })
	if err := a.DeleteTopic(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.Done():
	case <-ctx.Done():
		t.Fatal("the subscription went on after its topic was deleted")
	}
	if err := sub.Err(); !errors.Is(err, herald.ErrTopicNotFound) {
		t.Fatalf("subscription ended with %v, want ErrTopicNotFound", err)
	}
	if _, err := a.TopicInfo(ctx, "gone"); !errors.Is(err, herald.ErrTopicNotFound) {
		t.Fatalf("topic info after the delete: %v, want ErrTopicNotFound: the subscription brought it back", err)
	}
	for _, p := range ti.Partitions {
		if n, err := redisproc.Command(redistest.Shared(t).Addr(), 5*time.Second, "EXISTS", p.Stream); err != nil || n != "0" {
			t.Fatalf("stream %s exists (%s, %v) after the delete", p.Stream, n, err)
		}
	}
	// b's cached layout is dropped: its publish then creates the topic
	// anew, with the default layout.
	waitFor(t, 20*time.Second, "the other client to drop the deleted topic", func() bool {
		if _, err := b.Publish(ctx, "gone", herald.Event{Data: []byte("y")}); err != nil {
			t.Fatal(err)
		}
		_, err := a.TopicInfo(ctx, "gone")
		return err == nil
	})
}

// twoClients opens two clients of one namespace, as two processes would;
// the test's end closes both.
func twoClients(t *testing.T) (a, b *herald.Client) {
	t.Helper()
	a = newClient(t)
	b, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: a.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return a, b
}

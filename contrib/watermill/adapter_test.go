package watermill_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	wm "github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald"
	heraldwm "github.com/heraldbus/herald/contrib/watermill"
)

func newClient(t *testing.T) *herald.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := herald.New(ctx, heraldConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func topicName() string { return "t-" + wm.NewShortUUID() }

// receive waits (bounded) for the next message on ch.
func receive(t *testing.T, ch <-chan *message.Message, within time.Duration) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("messages channel closed")
		}
		return m
	case <-time.After(within):
		t.Fatalf("no message within %s", within)
	}
	return nil
}

// A message published twice with one UUID is stored twice (the UUID is a
// header, not Herald's dedupe id), and comes back with its metadata and payload.
func TestUUIDIsAHeaderNotTheDedupeID(t *testing.T) {
	needRedis(t)
	t.Parallel()
	c := newClient(t)
	ctx := context.Background()
	pub, err := heraldwm.NewPublisher(ctx, heraldwm.PublisherConfig{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := heraldwm.NewSubscriber(ctx, heraldwm.SubscriberConfig{Client: c, ConsumerGroup: "g", Start: herald.StartBeginning})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	topic := topicName()
	msg := message.NewMessage(wm.NewUUID(), []byte("payload"))
	msg.Metadata.Set("trace", "abc")
	for range 2 {
		if err := pub.Publish(topic, msg); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := c.Events(ctx, topic, herald.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 {
		t.Fatalf("stored %d events, want 2 (no dedupe by UUID)", len(stored))
	}
	for _, e := range stored {
		if e.ID == msg.UUID || e.Headers[heraldwm.HeaderUUID] != msg.UUID || e.Headers["trace"] != "abc" || string(e.Data) != "payload" {
			t.Fatalf("stored event id %q headers %v data %q; want a Herald id, the UUID in %s, metadata as headers",
				e.ID, e.Headers, e.Data, heraldwm.HeaderUUID)
		}
	}
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		m := receive(t, ch, 10*time.Second)
		if m.UUID != msg.UUID || string(m.Payload) != "payload" || m.Metadata.Get("trace") != "abc" || m.Metadata.Get(heraldwm.HeaderUUID) != "" {
			t.Fatalf("received uuid %q payload %q metadata %v; want %q, payload, trace=abc and no %s",
				m.UUID, m.Payload, m.Metadata, msg.UUID, heraldwm.HeaderUUID)
		}
		m.Ack()
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(topic, msg); !errors.Is(err, heraldwm.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	// The client was passed in: it stays open.
	if _, err := c.Publish(ctx, topic, herald.Event{Data: []byte("x")}); err != nil {
		t.Fatalf("client passed in was closed by the Publisher: %v", err)
	}
}

// Nack retries with Herald's backoff; after MaxAttempts the event is a dead letter.
func TestNackRetriesWithBackoffThenDeadLetters(t *testing.T) {
	needRedis(t)
	t.Parallel()
	c := newClient(t)
	ctx := context.Background()
	const backoff = 300 * time.Millisecond // a retry waits between backoff/2 and backoff
	sub, err := heraldwm.NewSubscriber(ctx, heraldwm.SubscriberConfig{Client: c, ConsumerGroup: "g",
		Options: []herald.SubscribeOption{herald.Backoff(backoff, backoff), herald.MaxAttempts(2)}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	topic := topicName()
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := heraldwm.NewPublisher(ctx, heraldwm.PublisherConfig{Client: c})
	uuid := wm.NewUUID()
	if err := pub.Publish(topic, message.NewMessage(uuid, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch, 10*time.Second)
	nacked := time.Now()
	m.Nack()
	m = receive(t, ch, 10*time.Second)
	if waited := time.Since(nacked); m.UUID != uuid || waited < backoff/2 {
		t.Fatalf("redelivered %q after %s; want %q after at least %s", m.UUID, waited, uuid, backoff/2)
	}
	m.Nack()
	deadline := time.Now().Add(10 * time.Second)
	for {
		dl, err := c.DeadLetters(ctx, topic, herald.Query{Group: "g"})
		if err != nil {
			t.Fatal(err)
		}
		if len(dl) == 1 && dl[0].Headers[heraldwm.HeaderUUID] == uuid && dl[0].Attempts == 2 && strings.Contains(dl[0].Error, "nacked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters %+v; want the message after 2 nacked attempts", dl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case m := <-ch:
		t.Fatalf("message %s delivered again after MaxAttempts", m.UUID)
	case <-time.After(backoff):
	}
}

// Without a ConsumerGroup every subscription has a group of its own (each
// gets every message) that is deleted when it ends; an own client is closed.
func TestEphemeralGroupsFanOutAndAreDeleted(t *testing.T) {
	needRedis(t)
	t.Parallel()
	c := newClient(t)
	ctx := context.Background()
	sub, err := heraldwm.NewSubscriber(ctx, heraldwm.SubscriberConfig{Herald: heraldConfig()})
	if err != nil {
		t.Fatal(err)
	}
	topic := topicName()
	ch1, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	ch2, err := sub.Subscribe(cctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := c.Groups(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || !strings.HasPrefix(groups[0].Name, heraldwm.EphemeralGroupPrefix) || groups[0].Name == groups[1].Name {
		t.Fatalf("groups %+v; want two distinct %s... groups", groups, heraldwm.EphemeralGroupPrefix)
	}
	pub, _ := heraldwm.NewPublisher(ctx, heraldwm.PublisherConfig{Client: c})
	msg := message.NewMessage(wm.NewUUID(), []byte("x"))
	if err := pub.Publish(topic, msg); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan *message.Message{ch1, ch2} {
		if m := receive(t, ch, 10*time.Second); m.UUID != msg.UUID {
			t.Fatalf("got %s, want %s", m.UUID, msg.UUID)
		} else {
			m.Ack()
		}
	}
	// Cancelling a Subscribe's ctx closes its channel and deletes its group.
	cancel()
	select {
	case _, open := <-ch2:
		if open {
			t.Fatal("message after the subscription's ctx ended")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed after its ctx ended")
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-ch1; open {
		t.Fatal("channel open after Close")
	}
	if groups, err = c.Groups(ctx, topic); err != nil || len(groups) != 0 {
		t.Fatalf("groups after Close: %+v, %v; want none", groups, err)
	}
	if _, err := sub.Subscribe(ctx, topic); !errors.Is(err, heraldwm.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A message sent but not acked when the subscriber closes goes back to the
// group at once and is not counted as an attempt.
func TestCloseHandsBackUnacked(t *testing.T) {
	needRedis(t)
	t.Parallel()
	c := newClient(t)
	ctx := context.Background()
	topic := topicName()
	// A handed-back entry goes to the group's retry stream, which the next
	// subscriber reads at once; an entry not handed back would stay pending
	// for the whole visibility timeout (30s) first, far beyond the 10s wait
	// below.
	cfg := heraldwm.SubscriberConfig{Client: c, ConsumerGroup: "g",
		Options: []herald.SubscribeOption{herald.MaxAttempts(1), herald.VisibilityTimeout(30 * time.Second)}}
	sub1, err := heraldwm.NewSubscriber(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ch1, err := sub1.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := heraldwm.NewPublisher(ctx, heraldwm.PublisherConfig{Client: c})
	uuid := wm.NewUUID()
	if err := pub.Publish(topic, message.NewMessage(uuid, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch1, 10*time.Second)
	if err := sub1.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Context().Done():
	default:
		t.Fatal("message context not done after Close")
	}
	sub2, err := heraldwm.NewSubscriber(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	ch2, err := sub2.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	// Before the visibility timeout; with MaxAttempts(1) a counted attempt
	// would have dead-lettered it instead.
	start := time.Now()
	if m := receive(t, ch2, 10*time.Second); m.UUID != uuid {
		t.Fatalf("got %s, want %s", m.UUID, uuid)
	}
	t.Logf("the handed-back message came again %v after the second Subscribe", time.Since(start).Round(time.Millisecond))
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []heraldwm.SubscriberConfig{
		{Concurrency: -1},
		{CloseTimeout: -time.Second},
		{ConsumerGroup: "bad group"},
	} {
		if _, err := heraldwm.NewSubscriber(ctx, cfg); err == nil {
			t.Errorf("NewSubscriber(%+v) succeeded; want an error", cfg)
		}
	}
	if _, err := heraldwm.NewPublisher(ctx, heraldwm.PublisherConfig{Herald: herald.Config{URL: "nope://x"}}); err == nil {
		t.Error("NewPublisher with a bad URL succeeded; want an error")
	}
}

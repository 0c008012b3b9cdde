package herald_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestMonitorSeesEventsPublishedOnceSubscribed: a script that starts a
// monitor and waits for it to show up (its pattern subscription in PUBSUB
// NUMPAT, as the README tour does) before publishing must see every event
// it publishes then. Monitor reads the end of every topic before it
// subscribes; when it subscribed first, an event published in between was
// skipped, and with many topics (many end reads) that window was wide.
func TestMonitorSeesEventsPublishedOnceSubscribed(t *testing.T) {
	t.Parallel()
	srv := redistest.Own(t, redisproc.Options{}) // NUMPAT is server-wide: no neighbours
	c, err := herald.New(context.Background(), herald.Config{URL: srv.URL(), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := ctxT(t, 60*time.Second)
	const topics, parts, rounds = 60, 4, 3
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("watch.%02d", i)
		if err := c.CreateTopic(ctx, names[i], herald.TopicConfig{Partitions: parts}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Publish(ctx, names[i], herald.Event{Key: "old", Data: []byte("before the monitor")}); err != nil {
			t.Fatal(err)
		}
	}
	numpat := func() int64 {
		n, err := c.NumPat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for r := range rounds {
		mctx, stop := context.WithCancel(ctx)
		started := make(chan error, 1)
		var evs <-chan herald.MonitorEvent
		go func() {
			var err error
			evs, err = c.Monitor(mctx, herald.MonitorFilter{Topics: "watch.*"})
			started <- err
		}()
		// Publish as soon as the subscription shows, as a script would;
		// polled without pauses so the publishes land as early as they can.
		deadline := time.Now().Add(10 * time.Second)
		for numpat() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the monitor's pattern subscription did not show within 10s", r)
			}
		}
		want := map[string]string{}        // position -> topic
		for i := topics - 1; i >= 0; i-- { // the topics whose ends are read last first
			pos, err := c.Publish(ctx, names[i], herald.Event{Key: fmt.Sprint("k", r), Data: []byte("after")})
			if err != nil {
				t.Fatal(err)
			}
			want[pos.ID] = names[i]
		}
		if err := <-started; err != nil {
			t.Fatal(err)
		}
		timeout := time.After(10 * time.Second)
		for len(want) > 0 {
			select {
			case ev := <-evs:
				if ev.Kind != "event" {
					continue
				}
				if ev.Key != fmt.Sprint("k", r) {
					t.Fatalf("round %d: an event published before the monitor started is shown: %+v", r, ev)
				}
				if want[ev.Position] == ev.Topic {
					delete(want, ev.Position)
				}
			case <-timeout:
				t.Fatalf("round %d: %d of %d events published once the monitor had subscribed were not shown: %v",
					r, len(want), topics, want)
			}
		}
		stop()
		for range evs { // closed once every reader has stopped
		}
		redistest.WaitFor(t, 10*time.Second, "the monitor's pattern subscription to end", func() bool { return numpat() == 0 })
	}
}

package herald_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald"
)

// A new owner that claims a backlog left pending, with a read share of 8
// or less (so the reader handles each claimed batch itself and holds its
// acks), hands those acks on before it waits for in-flight slots: it
// handles the whole backlog and what comes after. (The claim used to wait
// for slots that only its own held acks would free: it stopped for good
// after MaxInFlight events.)
func TestTakeoverClaimWithSmallShareDoesNotStall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []herald.SubscribeOption
	}{
		{"MaxInFlight(8)", []herald.SubscribeOption{herald.MaxInFlight(8), herald.Concurrency(1)}},
		{"ReadBatch(8)", []herald.SubscribeOption{herald.ReadBatch(8), herald.MaxInFlight(64), herald.Concurrency(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t)
			ctx := ctxT(t, time.Minute)
			if err := c.CreateTopic(ctx, "t", herald.TopicConfig{Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			const n = 300
			evs := make([]herald.Event, n)
			for i := range evs {
				evs[i] = herald.Event{Key: "k" + strconv.Itoa(i%5), Data: []byte(strconv.Itoa(i))}
			}
			if _, err := c.PublishBatch(ctx, "t", evs); err != nil {
				t.Fatal(err)
			}
			// The first owner reads a big batch, handles a few slowly and
			// stops: the rest stays pending under its name.
			var firstHandled atomic.Int64
			release := make(chan struct{})
			a, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
				if firstHandled.Add(1) > 3 {
					<-release
				}
				return nil
			}), herald.Consumer("a"), herald.From(herald.StartBeginning))
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the first owner to handle 3 events", func() bool { return firstHandled.Load() > 3 })
			stopped := make(chan struct{})
			go func() { a.Stop(); close(stopped) }()
			close(release)
			<-stopped
			var mu sync.Mutex
			seen := map[string]bool{}
			b, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
				mu.Lock()
				seen[string(m.Data)] = true
				mu.Unlock()
				return nil
			}), append([]herald.SubscribeOption{herald.Consumer("b")}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Stop()
			for i := n; i < n+20; i++ {
				if _, err := c.Publish(ctx, "t", herald.Event{Key: "k", Data: []byte(strconv.Itoa(i))}); err != nil {
					t.Fatal(err)
				}
			}
			// Every event not acknowledged by the first owner, and the new ones.
			waitFor(t, 20*time.Second, "the new owner to handle the backlog and the new events", func() bool {
				gs, err := c.Groups(ctx, "t")
				if err != nil || len(gs) != 1 {
					return false
				}
				mu.Lock()
				defer mu.Unlock()
				return gs[0].Pending == 0 && gs[0].Lag == 0 && seen[strconv.Itoa(n+19)]
			})
		})
	}
}

// A handler still running when its partition changes owner (a rebalance,
// or Drain) keeps the lease renewed until it returns: the next owner does
// not take the entry over while it is being handled.
func TestSlowHandlerKeepsLeaseThroughHandover(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"rebalance", "drain"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c1 := newClient(t)
			c2 := c1 // the two consumers of the group (one client, two subscriptions)
			ctx := ctxT(t, time.Minute)
			if err := c1.CreateTopic(ctx, "t", herald.TopicConfig{Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			var active, overlaps atomic.Int32
			var mu sync.Mutex
			var log []string
			slowStarted := make(chan struct{})
			var once sync.Once
			handler := func(name string) herald.Handler {
				return herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
					if active.Add(1) > 1 {
						overlaps.Add(1)
					}
					defer active.Add(-1)
					mu.Lock()
					log = append(log, name+":start:"+string(m.Data))
					mu.Unlock()
					if string(m.Data) == "0" && name == "old" {
						once.Do(func() { close(slowStarted) })
						time.Sleep(3 * time.Second) // three lease times: the work itself, not a wait for a condition
					}
					mu.Lock()
					log = append(log, name+":end:"+string(m.Data))
					mu.Unlock()
					return nil
				})
			}
			oldName, newName := "b", "a" // rebalance: the newcomer sorts first and is assigned partition 0
			if mode == "drain" {
				oldName, newName = "a", "b"
			}
			lease := herald.LeaseTime(time.Second)
			old, err := c1.Subscribe(ctx, "t", "g", handler("old"), herald.Consumer(oldName), lease, herald.From(herald.StartBeginning))
			if err != nil {
				t.Fatal(err)
			}
			defer old.Stop()
			var next *herald.Subscription
			if mode == "drain" {
				if next, err = c2.Subscribe(ctx, "t", "g", handler("new"), herald.Consumer(newName), lease); err != nil {
					t.Fatal(err)
				}
				defer next.Stop()
			}
			for i := range 3 {
				if _, err := c1.Publish(ctx, "t", herald.Event{Key: "k", Data: []byte(strconv.Itoa(i))}); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-slowStarted:
			case <-ctx.Done():
				t.Fatal("the slow handler did not start")
			}
			if mode == "rebalance" {
				if next, err = c2.Subscribe(ctx, "t", "g", handler("new"), herald.Consumer(newName), lease); err != nil {
					t.Fatal(err)
				}
				defer next.Stop()
			} else {
				go func() { _ = old.Drain(ctx) }()
			}
			waitFor(t, 20*time.Second, "events 1 and 2 handled after the slow one", func() bool {
				mu.Lock()
				defer mu.Unlock()
				n := 0
				for _, l := range log {
					if l == "new:end:1" || l == "new:end:2" || l == "old:end:1" || l == "old:end:2" {
						n++
					}
				}
				return n >= 2
			})
			mu.Lock()
			defer mu.Unlock()
			if overlaps.Load() > 0 {
				t.Errorf("%s: key k handled by two consumers at once; log %v", mode, log)
			}
			for _, l := range log {
				if l == "new:start:0" {
					t.Errorf("%s: the next owner took over event 0 while it was being handled; log %v", mode, log)
				}
			}
		})
	}
}

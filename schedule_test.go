package herald_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// arrival is one delivery seen by a test handler.
type arrival struct {
	group, data, id string
	at              time.Time
}

// collect subscribes group and sends every delivery to out.
func collect(t *testing.T, ctx context.Context, c *herald.Client, topic, group string, out chan<- arrival, opts ...herald.SubscribeOption) *herald.Subscription {
	t.Helper()
	s, err := c.Subscribe(ctx, topic, group, herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		out <- arrival{group: group, data: string(m.Data), id: m.ID, at: time.Now()}
		return nil
	}), append([]herald.SubscribeOption{herald.BlockTime(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDelayedEventReachesTwoGroupsWhenDue(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	got := make(chan arrival, 10)
	collect(t, ctx, c, "orders", "billing", got)
	collect(t, ctx, c, "orders", "mail", got)
	// 2 s: the event without delay must arrive before the delayed one is
	// due, which a loaded machine must be able to do with room to spare.
	const delay = 2 * time.Second
	due := time.Now().Add(delay)
	pos, err := c.Publish(ctx, "orders", herald.Event{ID: "reminder-1", Data: []byte("later")}, herald.Delay(delay))
	if err != nil {
		t.Fatal(err)
	}
	if pos.ID != "" || pos.Duplicate {
		t.Fatalf("delayed publish answered %+v, want no stream id yet", pos)
	}
	// Scheduling the same id again is a duplicate, not a second event.
	if pos, err := c.Publish(ctx, "orders", herald.Event{ID: "reminder-1", Data: []byte("later")}, herald.Delay(delay)); err != nil || !pos.Duplicate {
		t.Fatalf("second schedule of one id: %+v %v, want Duplicate", pos, err)
	}
	if _, err := c.Publish(ctx, "orders", herald.Event{Data: []byte("now")}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for len(seen) < 4 {
		select {
		case a := <-got:
			seen[a.group+"/"+a.data]++
			if a.data == "later" {
				if a.at.Before(due) {
					t.Errorf("%s got the delayed event %v early", a.group, due.Sub(a.at))
				}
				if late := a.at.Sub(due); late > 5*time.Second {
					t.Errorf("%s got the delayed event %v late", a.group, late)
				}
				if a.id != "reminder-1" {
					t.Errorf("delayed event id %q, want reminder-1", a.id)
				}
			} else if !a.at.Before(due) {
				t.Errorf("the event without delay waited for the delayed one")
			}
		case <-ctx.Done():
			t.Fatalf("deliveries: %v", seen)
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
	select {
	case a := <-got:
		t.Fatalf("unexpected extra delivery %+v", a)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestCancelledDelayedEventNeverArrives(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	if err := c.CreateTopic(ctx, "jobs", herald.TopicConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	got := make(chan arrival, 10)
	collect(t, ctx, c, "jobs", "workers", got)
	// Far enough out that the cancel below comes before the mover moves
	// "drop", however slow the machine.
	at := time.Now().Add(3 * time.Second)
	for _, id := range []string{"keep", "drop"} {
		if _, err := c.Schedule(ctx, "jobs", herald.Event{ID: id, Key: id, Type: "job", Data: []byte(id)}, at); err != nil {
			t.Fatal(err)
		}
	}
	list, total, err := c.ScheduledEvents(ctx, "jobs", herald.ScheduleFilter{})
	if err != nil || total != 2 || len(list) != 2 {
		t.Fatalf("scheduled: %+v total %d, %v", list, total, err)
	}
	for _, s := range list {
		// Due times are whole milliseconds, rounded up: never before at.
		if s.Due.Before(at) || s.Due.Sub(at) >= time.Millisecond || s.Type != "job" || string(s.Data) != s.ID {
			t.Fatalf("listed %+v, want due %v (rounded up to the millisecond) with its type and data", s, at)
		}
	}
	if ok, err := c.CancelScheduled(ctx, "jobs", "drop"); err != nil || !ok {
		t.Fatalf("cancel: %v %v", ok, err)
	}
	if ok, err := c.CancelScheduled(ctx, "jobs", "drop"); err != nil || ok {
		t.Fatalf("second cancel: %v %v, want false", ok, err)
	}
	if list, _, _ := c.ScheduledEvents(ctx, "jobs", herald.ScheduleFilter{ID: "drop"}); len(list) != 0 {
		t.Fatalf("cancelled event still listed: %+v", list)
	}
	select {
	case a := <-got:
		if a.data != "keep" {
			t.Fatalf("got %q first", a.data)
		}
	case <-ctx.Done():
		t.Fatal("the kept event never arrived")
	}
	select {
	case a := <-got:
		t.Fatalf("cancelled event arrived: %+v", a)
	case <-time.After(time.Second):
	}
	if _, err := c.Publish(ctx, "jobs", herald.Event{}, herald.Delay(-time.Second)); err == nil {
		t.Fatal("negative delay accepted")
	}
}

func TestTwoMoversDoNotDuplicate(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	mk := func() *herald.Client {
		c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := mk(), mk()
	ctx := ctxT(t, 30*time.Second)
	if err := a.CreateTopic(ctx, "t", herald.TopicConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	got := make(chan arrival, 5000)
	collect(t, ctx, a, "t", "g", got, herald.ReadBatch(500))
	// Both clients schedule half of the events for the same millisecond, so
	// both movers wake for it and race on every partition.
	at := time.Now().Add(400 * time.Millisecond)
	const n = 2000
	var wg sync.WaitGroup
	for k, c := range []*herald.Client{a, b} {
		wg.Go(func() {
			evs := make([]herald.Event, n/2)
			for i := range evs {
				evs[i] = herald.Event{Key: fmt.Sprint(i % 50), Data: []byte(fmt.Sprintf("%d-%d", k, i))}
			}
			if _, err := c.PublishBatch(ctx, "t", evs, herald.At(at)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for len(seen) < n {
		select {
		case r := <-got:
			if seen[r.data] {
				t.Fatalf("%s delivered twice", r.data)
			}
			if r.at.Before(at) {
				t.Fatalf("%s delivered early", r.data)
			}
			seen[r.data] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d arrived", len(seen), n)
		}
	}
	ti, err := a.TopicInfo(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	var length int64
	for _, p := range ti.Partitions {
		length += p.Length
	}
	if length != n {
		t.Fatalf("streams hold %d entries, want %d (a move was duplicated)", length, n)
	}
}

func TestDelayedEventSurvivesRedisRestartWithAOF(t *testing.T) {
	t.Parallel()
	// fsync always: the schedule is acknowledged, then Redis is SIGKILLed at
	// once; with everysec a busy disk postpones the write past the kill.
	srv := redistest.Own(t, redisproc.Options{AppendOnly: true, Args: []string{"--appendfsync", "always"}})
	c, err := herald.New(context.Background(), herald.Config{URL: srv.URL(), Namespace: "delay"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t, 60*time.Second)
	got := make(chan arrival, 10)
	collect(t, ctx, c, "t", "g", got, herald.Consumer("c1"))
	due := time.Now().Add(1500 * time.Millisecond)
	if _, err := c.Publish(ctx, "t", herald.Event{ID: "after-restart", Data: []byte("x")}, herald.At(due)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(ctx); err != nil { // SIGKILL and start again on the same AOF
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.id != "after-restart" || a.at.Before(due) {
			t.Fatalf("got %+v, want after-restart no earlier than %v", a, due)
		}
	case <-ctx.Done():
		t.Fatal("the delayed event did not arrive after the restart")
	}
}

func TestClusterDelayedEventsOfAllPartitionsArrive(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	c, err := herald.New(context.Background(), herald.Config{URL: cl.URL(), Namespace: "delay"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t, 60*time.Second)
	if err := c.CreateTopic(ctx, "t", herald.TopicConfig{Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	got := make(chan arrival, 1000)
	collect(t, ctx, c, "t", "g", got)
	at := time.Now().Add(500 * time.Millisecond)
	parts := map[int]bool{}
	const n = 120
	for i := range n {
		pos, err := c.Publish(ctx, "t", herald.Event{Key: fmt.Sprint("k", i), Data: []byte(fmt.Sprint(i))}, herald.At(at))
		if err != nil {
			t.Fatal(err)
		}
		parts[pos.Partition] = true
	}
	if len(parts) != 6 {
		t.Fatalf("events scheduled on partitions %v, want all 6", parts)
	}
	seen := map[string]bool{}
	for len(seen) < n {
		select {
		case a := <-got:
			if a.at.Before(at) {
				t.Fatalf("%s arrived early", a.data)
			}
			seen[a.data] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d delayed events arrived on the cluster", len(seen), n)
		}
	}
}

// A topic fed only by delayed events is trimmed by its MaxAge, as one fed
// by publishes is: the mover trims the stream after it moves events.
func TestDelayedEventsTrimmedByMaxAge(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, time.Minute)
	if err := c.CreateTopic(ctx, "aged", herald.TopicConfig{Partitions: 1, MaxAge: time.Second}); err != nil {
		t.Fatal(err)
	}
	length := func() int64 {
		ti, err := c.TopicInfo(ctx, "aged")
		if err != nil {
			return -1
		}
		return ti.Length
	}
	evs := make([]herald.Event, 100)
	for i := range evs {
		evs[i] = herald.Event{Data: []byte("old")}
	}
	for range 10 {
		if _, err := c.PublishBatch(ctx, "aged", evs, herald.Delay(0)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "1,000 delayed events moved to the stream", func() bool { return length() == 1000 })
	time.Sleep(1100 * time.Millisecond) // not a condition: the events age past MaxAge
	if _, err := c.Publish(ctx, "aged", herald.Event{Data: []byte("new")}, herald.Delay(0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the aged events trimmed when the next delayed event was moved", func() bool {
		n := length()
		return n >= 1 && n < 200
	})
}

package herald

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// Regression tests for the consumer-side items of issue 13. Each runs with
// the default visibility timeout (30s), so that the reclaim of idle entries
// cannot hide what it checks.

// Issue 13 item 1: ErrRelease hands the event to another consumer of the
// group at once, not after the visibility timeout.
func TestErrReleaseReachesAnotherConsumerAtOnce(t *testing.T) {
	t.Parallel()
	c := testClient(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var released atomic.Int32
	busy, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		released.Add(1)
		return ErrRelease
	}), Consumer("busy"), Unordered())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "t", Event{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 5*time.Second, "the busy consumer to release", func() bool { return released.Load() > 0 })
	busy.Stop() // the event must already be back with the group
	<-busy.Done()
	got := make(chan *Message, 1)
	start := time.Now()
	if _, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		select {
		case got <- m:
		default:
		}
		return nil
	}), Consumer("free"), Unordered()); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Attempt != 1 {
			t.Fatalf("released event came back as attempt %d, want 1", m.Attempt)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("released event took %v to reach another consumer", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("released event did not reach another consumer within 5s (visibility timeout is 30s)")
	}
}

// Issue 13 item 1, ordered: a released event is offered again soon (after
// the first backoff) as the same attempt, and its key waits for it.
func TestErrReleaseOrderedOfferedAgainSoon(t *testing.T) {
	t.Parallel()
	c := testClient(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var seen []string
	var attempts []int
	done := make(chan struct{})
	if _, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		if string(m.Data) == "1" {
			attempts = append(attempts, m.Attempt)
			if len(attempts) == 1 {
				return ErrRelease
			}
		}
		seen = append(seen, string(m.Data))
		if len(seen) == 2 {
			close(done)
		}
		return nil
	}), Backoff(50*time.Millisecond, time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishBatch(ctx, "t", []Event{{Key: "k", Data: []byte("1")}, {Key: "k", Data: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("released event not offered again within 5s")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 2 || attempts[1] != 1 || seen[0] != "1" || seen[1] != "2" {
		t.Fatalf("attempts %v, handled %v; want the release not counted and the key kept in order", attempts, seen)
	}
}

// Issue 13 item 2: a read whose reply never reached the consumer leaves its
// entries pending for it; after the read error the consumer reads them again.
// The lost reply is made with an ACL: the subscription's user loses
// XREADGROUP (its reads fail) while the entries are read under its name.
func TestLostReadReplyEntriesReadAgainAfterError(t *testing.T) {
	t.Parallel()
	t.Run("ordered", func(t *testing.T) { lostReadReply(t) })
	t.Run("unordered", func(t *testing.T) { lostReadReply(t, Unordered()) })
}

func lostReadReply(t *testing.T, opts ...SubscribeOption) {
	srv := redistest.Own(t, redisproc.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := New(ctx, Config{URL: srv.URL(), Namespace: "lost"})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.db.Do(ctx, "ACL", "SETUSER", "sub", "on", ">pw", "~*", "&*", "+@all"); err != nil {
		t.Fatal(err)
	}
	c, err := New(ctx, Config{URL: "redis://sub:pw@" + srv.Addr(), Namespace: "lost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var handled atomic.Int32
	sub, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		handled.Add(1)
		return nil
	}), append(opts, Consumer("c"), BlockTime(100*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "t", Event{Data: []byte("warm-up")}); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 10*time.Second, "the warm-up event", func() bool { return handled.Load() == 1 })
	if _, err := admin.db.Do(ctx, "ACL", "SETUSER", "sub", "-xreadgroup"); err != nil {
		t.Fatal(err)
	}
	errs := sub.Stats().RedisErrors
	waitCond(t, 10*time.Second, "a failed read", func() bool { return sub.Stats().RedisErrors > errs })
	tp, err := admin.topic(ctx, "t", false)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := admin.Publish(ctx, "t", Event{Data: []byte("lost")}); err != nil {
			t.Fatal(err)
		}
	}
	// The read Redis answered but whose reply was lost: the entries are
	// pending for "c".
	es, err := admin.db.ReadGroup(ctx, tp.parts[0], "g", "c", 10, 0)
	if err != nil || len(es) != 5 {
		t.Fatalf("read as c: %d entries, %v", len(es), err)
	}
	if _, err := admin.db.Do(ctx, "ACL", "SETUSER", "sub", "+xreadgroup"); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 5*time.Second, "the 5 entries of the lost read (visibility timeout is 30s)", func() bool { return handled.Load() == 6 })
}

// Issue 13 item 3: a consumer restarted under its name re-reads its pending
// entries on every partition, even when they are more than MaxInFlight.
func TestRestartedConsumerReReadsPendingOnEveryPartition(t *testing.T) {
	t.Parallel()
	t.Run("ordered", func(t *testing.T) { restartedConsumerReReads(t) })
	t.Run("unordered", func(t *testing.T) { restartedConsumerReReads(t, Unordered()) })
}

func restartedConsumerReReads(t *testing.T, opts ...SubscribeOption) {
	c := testClient(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tp, err := c.topic(ctx, "t", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, pk := range tp.parts {
		if err := c.db.EnsureGroup(ctx, pk, "g", "$"); err != nil {
			t.Fatal(err)
		}
	}
	const per = 150
	for p := range tp.parts {
		evs := make([]Event, per)
		for i := range evs {
			evs[i] = Event{Data: []byte("x")}
		}
		if _, err := c.PublishBatch(ctx, "t", evs, ToPartition(p)); err != nil {
			t.Fatal(err)
		}
		// "c" read them and died before handling any.
		if es, err := c.db.ReadGroup(ctx, tp.parts[p], "g", "c", per, 0); err != nil || len(es) != per {
			t.Fatalf("partition %d: read as c: %d, %v", p, len(es), err)
		}
	}
	var mu sync.Mutex
	got := map[string]bool{}
	if _, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		mu.Lock()
		got[m.Pos().String()] = true
		mu.Unlock()
		return nil
	}), append(opts, Consumer("c"), MaxInFlight(100))...); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 5*time.Second, "every pending entry of both partitions (visibility timeout is 30s)", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2*per
	})
}

// Issue 13 item 5: Groups counts lag in the stream. The group reads 4 of 10
// events, retention trims 3 it had not read, and a consumer reads the rest:
// Redis 7.0's own lag figure then says 3 forever; the true lag is 0.
func TestGroupLagTrueAfterRetentionTrim(t *testing.T) {
	t.Parallel()
	c := testClient(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tp, err := c.topic(ctx, "t", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.db.EnsureGroup(ctx, tp.parts[0], "g", "$"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := c.Publish(ctx, "t", Event{Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := c.db.ReadGroup(ctx, tp.parts[0], "g", "early", 4, 0)
	if err != nil || len(es) != 4 {
		t.Fatalf("read 4: %d %v", len(es), err)
	}
	for _, e := range es {
		if _, err := c.db.Do(ctx, "XACK", e.Stream, "g", e.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.db.Do(ctx, "XTRIM", tp.parts[0].Stream, "MAXLEN", "3"); err != nil {
		t.Fatal(err)
	}
	if gs, err := c.Groups(ctx, "t"); err != nil || len(gs) != 1 || gs[0].Lag != 3 {
		t.Fatalf("3 unread events left: %+v %v", gs, err)
	}
	var handled atomic.Int32
	sub, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error { handled.Add(1); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	waitCond(t, 10*time.Second, "3 handled", func() bool { return handled.Load() == 3 })
	if err := sub.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	gs, err := c.Groups(ctx, "t")
	if err != nil || len(gs) != 1 || gs[0].Lag != 0 || gs[0].Pending != 0 || gs[0].Partitions[0].Lag != 0 {
		t.Fatalf("after reading everything: %+v %v; want lag 0", gs, err)
	}
}

// Issue 13 item 6: Stats().Trimmed counts only events lost to a trim. An
// entry another consumer handled (and that retention then trimmed) is not a
// loss when this consumer's late handler fails on it.
func TestTrimmedNotCountedForEntriesHandledElsewhere(t *testing.T) {
	t.Parallel()
	c := testClient(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	started, release := make(chan struct{}, 1), make(chan struct{})
	sub, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		started <- struct{}{}
		<-release
		return errors.New("late failure")
	}), Consumer("slow"), Unordered())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "t", Event{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	<-started
	tp, _ := c.topic(ctx, "t", false)
	// Meanwhile another consumer took the entry over, handled and acked it,
	// and retention trimmed it.
	es, err := c.db.Range(ctx, tp.parts[0].Stream, "-", "+", 10)
	if err != nil || len(es) != 1 {
		t.Fatalf("range: %d %v", len(es), err)
	}
	if _, err := c.db.Do(ctx, "XACK", tp.parts[0].Stream, "g", es[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.db.Do(ctx, "XTRIM", tp.parts[0].Stream, "MAXLEN", "0"); err != nil {
		t.Fatal(err)
	}
	close(release)
	waitCond(t, 5*time.Second, "the failure recorded", func() bool { return sub.Stats().Failed == 1 })
	if err := sub.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if st := sub.Stats(); st.Trimmed != 0 || st.Retried != 0 {
		t.Fatalf("stats %+v: an entry handled elsewhere counted as trimmed or retried", st)
	}
}

// Issue 13 item 6: entries trimmed while pending are counted once, however
// many consumers meet them (two subscriptions under one name both re-read
// their pending entries).
func TestTrimmedPendingCountedOnce(t *testing.T) {
	t.Parallel()
	c := testClient(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tp, err := c.topic(ctx, "t", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.db.EnsureGroup(ctx, tp.parts[0], "g", "$"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := c.Publish(ctx, "t", Event{Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if es, err := c.db.ReadGroup(ctx, tp.parts[0], "g", "c", 10, 0); err != nil || len(es) != 10 {
		t.Fatalf("read as c: %d %v", len(es), err)
	}
	if _, err := c.db.Do(ctx, "XTRIM", tp.parts[0].Stream, "MAXLEN", "0"); err != nil {
		t.Fatal(err)
	}
	var subs []*Subscription
	for i := 0; i < 2; i++ {
		s, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error { return nil }), Consumer("c"), Unordered())
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	waitCond(t, 5*time.Second, "nothing pending", func() bool {
		gs, err := c.Groups(ctx, "t")
		return err == nil && len(gs) == 1 && gs[0].Pending == 0
	})
	total := int64(0)
	for _, s := range subs {
		if err := s.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		total += s.Stats().Trimmed
	}
	if total != 10 {
		t.Fatalf("Trimmed summed over both subscriptions = %d, want 10", total)
	}
}

// Far from both ends of a long stream, Groups does not count (it would hold
// Redis too long): it reports Redis's own figure, marked as an estimate.
func TestGroupLagEstimatedFarFromBothEnds(t *testing.T) {
	t.Parallel()
	c := testClient(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tp, err := c.topic(ctx, "t", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.db.EnsureGroup(ctx, tp.parts[0], "g", "$"); err != nil {
		t.Fatal(err)
	}
	n := rdb.LagCap + 2000
	if _, err := c.db.Do(ctx, "EVAL", "for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', 'd', 'x') end return 1",
		"1", tp.parts[0].Stream, strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
	if es, err := c.db.ReadGroup(ctx, tp.parts[0], "g", "c", int64(n/2), 0); err != nil || len(es) != n/2 {
		t.Fatalf("read half: %d %v", len(es), err)
	}
	gs, err := c.Groups(ctx, "t")
	if err != nil || len(gs) != 1 {
		t.Fatalf("groups: %+v %v", gs, err)
	}
	if g := gs[0]; g.Lag != int64(n/2) || !g.LagEstimated || !g.Partitions[0].LagEstimated {
		t.Fatalf("lag %d estimated %v, want Redis's %d marked as an estimate", g.Lag, g.LagEstimated, n/2)
	}
}

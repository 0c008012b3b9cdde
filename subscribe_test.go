package herald_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

func TestRetryWithGrowingDelaysThenSuccess(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	var mu sync.Mutex
	var times []time.Time
	var attempts []int
	handled := make(chan struct{})
	_, err := c.Subscribe(ctx, "jobs", "workers", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		attempts = append(attempts, m.Attempt)
		if len(times) <= 3 {
			return errors.New("flaky dependency")
		}
		close(handled)
		return nil
	}), herald.Backoff(40*time.Millisecond, time.Second), herald.MaxAttempts(5))
	if err != nil {
		t.Fatal(err)
	}
	pos, err := c.Publish(ctx, "jobs", herald.Event{Data: []byte("job")})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-ctx.Done():
		t.Fatal("not handled after 3 failures")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 4 || attempts[0] != 1 || attempts[3] != 4 {
		t.Fatalf("attempts = %v, want [1 2 3 4]", attempts)
	}
	// Backoff base*2^(n-1) with jitter in [d/2, d]: 20-40ms, 40-80ms, 80-160ms.
	for i, min := range []time.Duration{20, 40, 80} {
		if gap := times[i+1].Sub(times[i]); gap < min*time.Millisecond {
			t.Errorf("retry %d came after %v, want at least %v", i+1, gap, min*time.Millisecond)
		}
	}
	_ = pos
}

func TestAlwaysFailingGoesToDeadLettersAndRedrives(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	var fixed atomic.Bool
	handled := make(chan *herald.Message, 1)
	sub, err := c.Subscribe(ctx, "jobs", "workers", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		if !fixed.Load() {
			return errors.New("boom: database refused")
		}
		handled <- m
		return nil
	}), herald.Backoff(10*time.Millisecond, 20*time.Millisecond), herald.MaxAttempts(3))
	if err != nil {
		t.Fatal(err)
	}
	pos, err := c.Publish(ctx, "jobs", herald.Event{Type: "job", Data: []byte("payload")})
	if err != nil {
		t.Fatal(err)
	}
	var dls []herald.DeadLetter
	waitFor(t, 20*time.Second, "a dead letter", func() bool {
		dls, err = c.DeadLetters(ctx, "jobs", herald.Query{})
		return err == nil && len(dls) == 1
	})
	dl := dls[0]
	if dl.Error != "boom: database refused" || dl.Attempts != 3 || dl.Group != "workers" || dl.Origin != pos.ID || string(dl.Data) != "payload" {
		t.Fatalf("dead letter = %+v", dl)
	}
	// The stats count the dead letter once the script's reply is back: a
	// moment after the entry is visible in Redis.
	waitFor(t, 5*time.Second, "2 retries and 1 dead letter in the stats", func() bool {
		st := sub.Stats()
		return st.DeadLettered == 1 && st.Retried == 2
	})
	if st := sub.Stats(); st.DeadLettered != 1 || st.Retried != 2 || st.Handled != 0 {
		t.Fatalf("stats = %+v, want 2 retries, 1 dead letter, nothing handled", st)
	}
	fixed.Store(true)
	n, err := c.RedriveDeadLetters(ctx, "jobs", herald.Query{})
	if err != nil || n != 1 {
		t.Fatalf("redrive = %d, %v", n, err)
	}
	select {
	case m := <-handled:
		if m.Position != pos.ID || m.Attempt != 1 || string(m.Data) != "payload" {
			t.Fatalf("redriven message = %+v", m)
		}
	case <-ctx.Done():
		t.Fatal("redriven event not handled")
	}
	if dls, _ := c.DeadLetters(ctx, "jobs", herald.Query{}); len(dls) != 0 {
		t.Fatalf("%d dead letters left after redrive", len(dls))
	}
}

func TestPermanentErrorDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	var calls atomic.Int32
	_, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		calls.Add(1)
		return herald.Permanent(errors.New("schema mismatch"))
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a dead letter", func() bool {
		dls, _ := c.DeadLetters(ctx, "t", herald.Query{})
		return len(dls) == 1 && dls[0].Attempts == 1
	})
	if calls.Load() != 1 {
		t.Fatalf("handler called %d times, want 1", calls.Load())
	}
}

func TestReclaimAfterVisibilityTimeout(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	// The first consumer takes events and never finishes them, as if hung or dead.
	taken := make(chan struct{}, 10)
	stuck, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		taken <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}), herald.Consumer("stuck"), herald.Concurrency(5), herald.VisibilityTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte{byte('a' + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		<-taken
	}
	stuck.Stop() // hard stop: no ack, no failure recorded, the entries stay pending
	<-stuck.Done()
	var mu sync.Mutex
	got := map[string]bool{}
	_, err = c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		mu.Lock()
		got[string(m.Data)] = true
		mu.Unlock()
		return nil
	}), herald.Consumer("rescuer"), herald.VisibilityTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "all 5 reclaimed", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 5 })
}

func TestLongHandlerIsNotRedelivered(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	var calls atomic.Int32
	done := make(chan struct{})
	h := herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		if calls.Add(1) == 1 {
			time.Sleep(900 * time.Millisecond) // three visibility timeouts
			close(done)
		}
		return nil
	})
	for _, name := range []string{"a", "b"} {
		if _, err := c.Subscribe(ctx, "t", "g", h, herald.Consumer(name), herald.VisibilityTimeout(300*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("slow")}); err != nil {
		t.Fatal(err)
	}
	<-done
	// Give a reclaim round the chance to (wrongly) redeliver before checking:
	// not a condition, the absence of a redelivery over time is what is tested.
	time.Sleep(400 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler called %d times, want 1 (entry kept alive while running)", n)
	}
}

func TestSubscriptionSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Own(t, redisproc.Options{}) // no persistence: the restart loses everything
	c, err := herald.New(context.Background(), herald.Config{URL: srv.URL(), Namespace: "restart"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t, 60*time.Second)
	got := make(chan string, 100)
	sub, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		got <- string(m.Data)
		return nil
	}), herald.BlockTime(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "before" {
		t.Fatalf("got %q", v)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// Publish until the subscription has recovered and handles a new event.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no event handled after the restart; stats %+v", sub.Stats())
		}
		_, _ = c.Publish(ctx, "t", herald.Event{Data: []byte("after")}) // fails until Redis is back
		select {
		case v := <-got:
			if v != "after" {
				t.Fatalf("got %q", v)
			}
			if ti, err := c.TopicInfo(ctx, "t"); err != nil || ti.Config.Partitions != 1 {
				t.Fatalf("topic after restart: %+v %v", ti, err)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestDrainFinishesInFlight(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	var handled atomic.Int32
	started := make(chan struct{}, 100)
	sub, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		started <- struct{}{}
		time.Sleep(100 * time.Millisecond) // handler work: drain must wait for it
		handled.Add(1)
		return nil
	}), herald.Concurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		<-started
	}
	if err := sub.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if handled.Load() != 4 {
		t.Fatalf("handled %d, want 4", handled.Load())
	}
	gs, _ := c.Groups(ctx, "t")
	if len(gs) != 1 || gs[0].Pending != 0 {
		t.Fatalf("pending after drain: %+v", gs)
	}
	select {
	case <-sub.Done():
	default:
		t.Fatal("Done not closed after Drain")
	}
}

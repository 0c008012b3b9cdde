package herald_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald"
)

func TestPublishSubscribeRoundTrip(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	if err := c.CreateTopic(ctx, "orders", herald.TopicConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	got := make(chan *herald.Message, 100)
	sub, err := c.Subscribe(ctx, "orders", "billing", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		got <- m
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := herald.Event{Type: "order.created", Key: "o-1", Source: "shop", Subject: "o-1", ContentType: "application/json",
		Headers: map[string]string{"traceparent": "00-x"}, Data: []byte(`{"n":1}`), Time: time.UnixMicro(1700000000000001)}
	pos, err := c.Publish(ctx, "orders", want)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Type != want.Type || m.Key != want.Key || string(m.Data) != string(want.Data) || m.Headers["traceparent"] != "00-x" ||
			!m.Time.Equal(want.Time) || m.Position != pos.ID || m.Partition != pos.Partition || m.Attempt != 1 || len(m.ID) != 36 {
			t.Fatalf("delivered %+v, published %+v at %v", m, want, pos)
		}
	case <-ctx.Done():
		t.Fatal("event not delivered")
	}
	if err := sub.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	gs, err := c.Groups(ctx, "orders")
	if err != nil || len(gs) != 1 || gs[0].Pending != 0 {
		t.Fatalf("groups = %+v, %v; want one group with nothing pending", gs, err)
	}
}

func TestSameKeySamePartition(t *testing.T) {
	c := newClient(t, func(cfg *herald.Config) { cfg.DefaultTopic.Partitions = 8 })
	ctx := ctxT(t, 20*time.Second)
	var first herald.Position
	for i := 0; i < 20; i++ {
		p, err := c.Publish(ctx, "t", herald.Event{Key: "customer-42", Data: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		} else if p.Partition != first.Partition {
			t.Fatalf("key went to partition %d then %d", first.Partition, p.Partition)
		}
	}
	// Keyless events stay on one partition for a few milliseconds at a
	// time (fewer, larger batches) and so reach every partition over time.
	seen := map[int]bool{}
	deadline := time.Now().Add(5 * time.Second)
	n := 0
	for len(seen) < 8 && time.Now().Before(deadline) {
		p, err := c.Publish(ctx, "t", herald.Event{Data: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		seen[p.Partition] = true
		n++
	}
	if len(seen) != 8 {
		t.Fatalf("%d keyless events in 5s reached %d of 8 partitions", n, len(seen))
	}
}

func TestCallerIDDeduplicated(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 10*time.Second)
	ev := herald.Event{ID: "order-1-created", Data: []byte("a")}
	p1, err := c.Publish(ctx, "t", ev)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.Publish(ctx, "t", ev)
	if err != nil {
		t.Fatal(err)
	}
	if p2.ID != p1.ID || !p2.Duplicate || p1.Duplicate {
		t.Fatalf("second publish = %+v, first = %+v; want the first position, marked duplicate", p2, p1)
	}
	info, err := c.TopicInfo(ctx, "t")
	if err != nil || info.Length != 1 {
		t.Fatalf("topic length = %d (%v), want 1", info.Length, err)
	}
}

func TestConcurrentPublishCoalesced(t *testing.T) {
	c := newClient(t, func(cfg *herald.Config) { cfg.DefaultTopic.Partitions = 3 })
	ctx := ctxT(t, 20*time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]bool{}
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				p, err := c.Publish(ctx, "t", herald.Event{Data: []byte("x")})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids[p.String()] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	info, err := c.TopicInfo(ctx, "t")
	if err != nil || info.Length != 3200 || len(ids) != 3200 {
		t.Fatalf("length %d, distinct positions %d, err %v; want 3200", info.Length, len(ids), err)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 10*time.Second)
	for _, name := range []string{"", "has space", "br{ace}", strings.Repeat("a", 201), "tab\t", "ctl\x01"} {
		if _, err := c.Publish(ctx, name, herald.Event{Data: []byte("x")}); !errors.Is(err, herald.ErrInvalid) {
			t.Errorf("topic %q: err = %v, want ErrInvalid", name, err)
		}
	}
	big := make([]byte, herald.DefaultMaxEventBytes+1)
	_, err := c.PublishBatch(ctx, "t", []herald.Event{{Data: []byte("ok")}, {Data: big}})
	if !errors.Is(err, herald.ErrTooLarge) || !errors.Is(err, herald.ErrInvalid) {
		t.Fatalf("oversized event: err = %v, want ErrTooLarge", err)
	}
	info, err := c.TopicInfo(ctx, "t")
	if err != nil || info.Length != 0 {
		t.Fatalf("after a refused batch: length %d (%v), want 0", info.Length, err)
	}
	if _, err := herald.New(context.Background(), herald.Config{URL: "http://x"}); !errors.Is(err, herald.ErrInvalid) {
		t.Fatalf("malformed URL: err = %v, want ErrInvalid", err)
	}
	_ = fmt.Sprint
}

func TestPublishAsync(t *testing.T) {
	c := newClient(t, func(cfg *herald.Config) { cfg.DefaultTopic.Partitions = 4; cfg.MaxPending = 64 })
	ctx := ctxT(t, 20*time.Second)
	const n = 2000
	futs := make([]*herald.PublishFuture, n)
	for i := range futs {
		ev := herald.Event{Data: []byte(strconv.Itoa(i))}
		if i%2 == 0 {
			ev.Key = "k" // one partition, in call order
		}
		futs[i] = c.PublishAsync(ctx, "t", ev)
	}
	seen := map[string]bool{}
	var last herald.Position
	for i, f := range futs {
		p, err := f.Wait(ctx)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		select {
		case <-f.Done():
		default:
			t.Fatalf("event %d: Done not closed after Wait returned", i)
		}
		if seen[p.String()] {
			t.Fatalf("event %d: position %v given twice", i, p)
		}
		seen[p.String()] = true
		if i%2 == 0 {
			if i > 0 && (p.Partition != last.Partition || !herald.StreamIDLess(last.ID, p.ID)) {
				t.Fatalf("keyed event %d at %v after %v; want the same partition, later", i, p, last)
			}
			last = p
		}
	}
	info, err := c.TopicInfo(ctx, "t")
	if err != nil || info.Length != n {
		t.Fatalf("topic length = %d (%v), want %d", info.Length, err, n)
	}

	// Caller-set ids are deduplicated on this path too.
	p1, err1 := c.PublishAsync(ctx, "t", herald.Event{ID: "once", Data: []byte("a")}).Wait(ctx)
	p2, err2 := c.PublishAsync(ctx, "t", herald.Event{ID: "once", Data: []byte("a")}).Wait(ctx)
	if err1 != nil || err2 != nil || p2.ID != p1.ID || !p2.Duplicate {
		t.Fatalf("same id twice: %+v (%v), %+v (%v); want the first position, marked duplicate", p1, err1, p2, err2)
	}

	// Bad input settles the future at once and writes nothing.
	f := c.PublishAsync(ctx, "t", herald.Event{Data: make([]byte, herald.DefaultMaxEventBytes+1)})
	select {
	case <-f.Done():
	default:
		t.Fatal("an oversized event's future is not settled at once")
	}
	if _, err := f.Wait(ctx); !errors.Is(err, herald.ErrTooLarge) {
		t.Fatalf("oversized event: err = %v, want ErrTooLarge", err)
	}
	if _, err := c.PublishAsync(ctx, "bad name", herald.Event{}).Wait(ctx); !errors.Is(err, herald.ErrInvalid) {
		t.Fatalf("bad topic name: err = %v, want ErrInvalid", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.PublishAsync(done, "t", herald.Event{}).Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("ended ctx: err = %v, want context.Canceled", err)
	}
	if info, err := c.TopicInfo(ctx, "t"); err != nil || info.Length != n+1 {
		t.Fatalf("topic length = %d (%v), want %d", info.Length, err, n+1)
	}
}

func TestCloseSendsQueuedAsyncEvents(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	futs := make([]*herald.PublishFuture, 500)
	for i := range futs {
		futs[i] = c.PublishAsync(ctx, "t", herald.Event{Data: []byte("x")})
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i, f := range futs {
		select {
		case <-f.Done():
		default:
			t.Fatalf("event %d not settled when Close returned", i)
		}
		if _, err := f.Wait(ctx); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	_, err := c.PublishAsync(ctx, "t", herald.Event{}).Wait(ctx)
	if !errors.Is(err, herald.ErrClosed) {
		t.Fatalf("after Close: err = %v, want ErrClosed", err)
	}
}

// TestDedupeWindow: a caller-set id is remembered for at least the dedupe
// window and at most twice it, on the batch and the atomic paths alike.
func TestDedupeWindow(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	const window = 300 * time.Millisecond
	if err := c.CreateTopic(ctx, "t", herald.TopicConfig{Partitions: 4, DedupeWindow: window}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	first, err := c.Publish(ctx, "t", herald.Event{ID: "a", Data: []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	// The atomic path (several partitions) sees the same dedupe record.
	ps, err := c.PublishBatch(ctx, "t", []herald.Event{{ID: "a"}, {ID: "c"}, {ID: "a"}}, herald.Atomic())
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < window && (!ps[0].Duplicate || ps[0].ID != first.ID || ps[1].Duplicate || !ps[2].Duplicate || ps[2].ID != first.ID) {
		t.Fatalf("atomic batch a, c, a = %+v; want a as the duplicate of %v, c new", ps, first)
	}
	for {
		p, err := c.Publish(ctx, "t", herald.Event{ID: "a", Data: []byte("again")})
		if err != nil {
			t.Fatal(err)
		}
		age := time.Since(start)
		if !p.Duplicate {
			if age < window {
				t.Fatalf("id forgotten after %s, before the window of %s", age, window)
			}
			break
		}
		if p.ID != first.ID {
			t.Fatalf("duplicate reported at %v, first stored at %v", p, first)
		}
		if age > 2*window+2*time.Second {
			t.Fatalf("id still remembered after %s (window %s)", age, window)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

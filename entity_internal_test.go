package herald

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/redistest"
)

func testClient(t testing.TB, parts int) *Client {
	t.Helper()
	c, err := New(context.Background(), Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t), DefaultTopic: TopicConfig{Partitions: parts}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// 100 concurrent appenders on one entity: each version is won by exactly one.
func TestConcurrentAppendersOneWinnerPerVersion(t *testing.T) {
	t.Parallel()
	c := testClient(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const writers, perWriter = 100, 5
	var wins, conflicts atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perWriter; {
				evs, err := c.Read(ctx, "order-123", 1)
				if err != nil {
					t.Error(err)
					return
				}
				v := int64(len(evs))
				_, err = c.Append(ctx, "order-123", v, Event{Type: "order.changed", Data: []byte(fmt.Sprintf("w%d-%d", w, done))})
				switch {
				case err == nil:
					wins.Add(1)
					done++
				case errors.Is(err, ErrVersionConflict):
					conflicts.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	evs, err := c.Read(ctx, "order-123", 0)
	if err != nil {
		t.Fatal(err)
	}
	if wins.Load() != writers*perWriter || int64(len(evs)) != wins.Load() {
		t.Fatalf("wins %d, stored %d, want %d", wins.Load(), len(evs), writers*perWriter)
	}
	seen := map[string]bool{}
	for i, e := range evs {
		if e.Version != int64(i+1) {
			t.Fatalf("event %d has version %d: gap or duplicate", i, e.Version)
		}
		if seen[string(e.Data)] {
			t.Fatalf("payload %s stored twice", e.Data)
		}
		seen[string(e.Data)] = true
	}
	if conflicts.Load() == 0 {
		t.Fatal("100 concurrent writers never conflicted: the check is not exercised")
	}
	t.Logf("%d appends, %d conflicts", wins.Load(), conflicts.Load())
	// A stale expected version is refused with the current one.
	_, err = c.Append(ctx, "order-123", 3, Event{Data: []byte("late")})
	var vc *VersionConflictError
	if !errors.As(err, &vc) || vc.Current != writers*perWriter || vc.Expected != 3 {
		t.Fatalf("stale append: %v", err)
	}
}

func TestAppendWatchVariantAgrees(t *testing.T) {
	t.Parallel()
	c := testClient(t, 1)
	ctx := context.Background()
	if v, err := c.appendEntityWatch(ctx, "e", 0, Event{Data: []byte("a")}, Event{Data: []byte("b")}); err != nil || v != 2 {
		t.Fatalf("watch append = %d, %v", v, err)
	}
	if _, err := c.appendEntityWatch(ctx, "e", 1, Event{Data: []byte("x")}); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("stale watch append: %v", err)
	}
	if v, err := c.Append(ctx, "e", 2, Event{Data: []byte("c")}); err != nil || v != 3 {
		t.Fatalf("script append after watch = %d, %v", v, err)
	}
	evs, _ := c.Read(ctx, "e", 2)
	if len(evs) != 2 || string(evs[0].Data) != "b" || evs[1].Version != 3 {
		t.Fatalf("read from 2: %+v", evs)
	}
}

func TestAtomicBatchAllOrNothing(t *testing.T) {
	t.Parallel()
	c := testClient(t, 4)
	ctx := context.Background()
	evs := make([]Event, 8)
	for i := range evs {
		evs[i] = Event{Key: fmt.Sprintf("k%d", i), Data: []byte{byte('a' + i)}}
	}
	ps, err := c.PublishBatch(ctx, "t", evs, Atomic())
	if err != nil {
		t.Fatal(err)
	}
	parts := map[int]bool{}
	for _, p := range ps {
		parts[p.Partition] = true
	}
	if len(parts) < 2 {
		t.Fatalf("batch did not span partitions: %v", ps)
	}
	stored, _ := c.Events(ctx, "t", Query{})
	if len(stored) != 8 {
		t.Fatalf("stored %d of 8", len(stored))
	}

	// Injected failure: one partition's stream key is not a stream. The batch
	// is refused and none of its events, on any partition, becomes visible.
	tp, _ := c.topic(ctx, "t", false)
	if _, err := c.db.Do(ctx, "DEL", tp.parts[3].Stream); err != nil {
		t.Fatal(err)
	}
	if _, err := c.db.Do(ctx, "SET", tp.parts[3].Stream, "not a stream"); err != nil {
		t.Fatal(err)
	}
	before := map[int]int64{}
	ti, _ := c.TopicInfo(ctx, "t")
	for _, p := range ti.Partitions[:3] {
		before[p.Partition] = p.Length
	}
	batch := make([]Event, 0, 40)
	for i := 0; i < 40; i++ {
		batch = append(batch, Event{Key: fmt.Sprintf("x%d", i), Data: []byte("y")})
	}
	if _, err := c.PublishBatch(ctx, "t", batch, Atomic()); err == nil {
		t.Fatal("atomic batch onto a broken partition succeeded")
	}
	for p := 0; p < 3; p++ {
		si, _ := c.db.StreamInfo(ctx, tp.parts[p].Stream)
		if si.Length != before[p] {
			t.Fatalf("partition %d went from %d to %d events: a partial batch became visible", p, before[p], si.Length)
		}
	}
}

func TestAtomicBatchRetriedOnce(t *testing.T) {
	t.Parallel()
	c := testClient(t, 3)
	ctx := context.Background()
	var sends atomic.Int32
	c.testHookAppended = func() error {
		if sends.Add(1) == 1 {
			return errors.New("i/o timeout (simulated lost reply)")
		}
		return nil
	}
	evs := []Event{{Key: "a", Data: []byte("1")}, {Key: "b", Data: []byte("2")}, {Key: "c", Data: []byte("3")}, {Key: "d", Data: []byte("4")}}
	ps, err := c.PublishBatch(ctx, "t", evs, Atomic())
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := c.TopicInfo(ctx, "t")
	if sends.Load() != 2 || ti.Length != 4 {
		t.Fatalf("sent %d times, stored %d; want 2 sends and 4 events", sends.Load(), ti.Length)
	}
	for _, p := range ps {
		if p.ID == "" {
			t.Fatalf("missing position: %v", ps)
		}
	}
}

func TestSubscriptionFilter(t *testing.T) {
	t.Parallel()
	c := testClient(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan string, 10)
	sub, err := c.Subscribe(ctx, "articles", "tech-only", HandlerFunc(func(ctx context.Context, m *Message) error {
		got <- string(m.Data)
		return nil
	}), Filter(`data.category == "tech"`))
	if err != nil {
		t.Fatal(err)
	}
	for _, cat := range []string{"sports", "tech", "food", "tech"} {
		if _, err := c.Publish(ctx, "articles", Event{ContentType: "application/json", Data: []byte(`{"category":"` + cat + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ {
		select {
		case d := <-got:
			if d != `{"category":"tech"}` {
				t.Fatalf("handler got %s", d)
			}
		case <-ctx.Done():
			t.Fatal("filtered events not delivered")
		}
	}
	redistest.WaitFor(t, 10*time.Second, "2 filtered in the stats", func() bool { return sub.Stats().Filtered == 2 })
	if _, err := c.Subscribe(ctx, "articles", "bad", HandlerFunc(nil), Filter(`data.category ==`)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad filter: %v", err)
	}
}

func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	for _, variant := range []string{"script", "watch"} {
		b.Run(variant+"-no-contention", func(b *testing.B) {
			c := testClient(b, 1)
			app := c.Append
			if variant == "watch" {
				app = c.appendEntityWatch
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := app(ctx, "entity", int64(i), Event{Data: payload100}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(variant+"-8-writers-one-entity", func(b *testing.B) {
			c := testClient(b, 1)
			app := c.Append
			if variant == "watch" {
				app = c.appendEntityWatch
			}
			var version, conflicts atomic.Int64
			b.SetParallelism(4) // x GOMAXPROCS writers
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					for {
						v := version.Load()
						nv, err := app(ctx, "entity", v, Event{Data: payload100})
						if err == nil {
							version.CompareAndSwap(v, nv)
							break
						}
						var vc *VersionConflictError
						if !errors.As(err, &vc) {
							b.Error(err)
							return
						}
						conflicts.Add(1)
						version.Store(vc.Current)
					}
				}
			})
			b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/op")
		})
	}
}

var payload100 = []byte(fmt.Sprintf("%0100d", 1))

// Consumers that hold nothing and stay idle are removed from the group by a
// running subscription's janitor; one that still holds an entry is kept.
// Not parallel: it sets package variables that every subscription's janitor
// reads.
func TestIdleConsumersForgotten(t *testing.T) {
	c := testClient(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	oldAfter, oldEvery := idleConsumerAfter, forgetEvery
	idleConsumerAfter, forgetEvery = 200*time.Millisecond, 50*time.Millisecond
	defer func() { idleConsumerAfter, forgetEvery = oldAfter, oldEvery }()
	// "gone" consumed and left; "holder" left with an entry it never acked.
	for _, name := range []string{"gone", "holder"} {
		hold := name == "holder"
		got := make(chan struct{}, 1)
		sub, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
			got <- struct{}{}
			if hold {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}), Consumer(name), VisibilityTimeout(time.Hour), Unordered())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Publish(ctx, "t", Event{Data: []byte(name)}); err != nil {
			t.Fatal(err)
		}
		<-got
		if hold {
			sub.Stop() // the entry is handed back but stays pending for "holder"
			<-sub.Done()
		} else if err := sub.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Stopping hands unhandled entries back to the group: "holder" reads one
	// more under its name and never acks it.
	if _, err := c.Publish(ctx, "t", Event{Data: []byte("held")}); err != nil {
		t.Fatal(err)
	}
	tp0, _ := c.topic(ctx, "t", false)
	if es, err := c.db.ReadGroup(ctx, tp0.parts[0], "g", "holder", 1, 0); err != nil || len(es) == 0 {
		t.Fatalf("read as holder: %d, %v", len(es), err)
	}
	// A running subscription's janitor step forgets what is idle and empty.
	watcher, err := c.Subscribe(ctx, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error { return ErrRelease }),
		Consumer("watcher"), VisibilityTimeout(time.Hour), MaxInFlight(1), Unordered())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { watcher.Stop(); <-watcher.Done() }() // its janitor reads the variables restored above
	tp, _ := c.topic(ctx, "t", false)
	redistest.WaitFor(t, 15*time.Second, "the idle consumer forgotten, holder and watcher kept", func() bool {
		watcher.forgetIdleConsumers()
		names := consumerNames(t, c, tp.parts[0].Stream)
		return !names["gone"] && names["holder"] && names["watcher"]
	})
}

func consumerNames(t *testing.T, c *Client, stream string) map[string]bool {
	v, err := c.db.Do(context.Background(), "XINFO", "CONSUMERS", stream, "g")
	if err != nil {
		t.Fatal(err)
	}
	arr, _ := v.([]any)
	out := map[string]bool{}
	for _, e := range arr {
		m, _ := e.(map[string]any)
		n, _ := m["name"].(string)
		out[n] = true
	}
	return out
}

// An event with more headers than a script can pass on is refused before
// anything of its batch is written.
func TestEntityAppendRefusesTooManyHeaders(t *testing.T) {
	c := testClient(t, 1)
	ctx := context.Background()
	many := Event{Data: []byte("x"), Headers: map[string]string{}}
	for i := range maxHeaders + 1 {
		many.Headers[fmt.Sprintf("h%d", i)] = "v"
	}
	if _, err := c.Append(ctx, "acct", 0, Event{Data: []byte("small")}, many); !errors.Is(err, ErrInvalid) {
		t.Fatalf("append with %d headers: %v, want ErrInvalid", len(many.Headers), err)
	}
	evs, err := c.Read(ctx, "acct", 0)
	if err != nil || len(evs) != 0 {
		t.Fatalf("after the refused append the stream holds %d events (%v), want 0", len(evs), err)
	}
	if _, err := c.Publish(ctx, "t", many); !errors.Is(err, ErrInvalid) {
		t.Fatalf("publish with %d headers: %v, want ErrInvalid", len(many.Headers), err)
	}
}

package herald_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// Benchmarks compare Herald with raw Redis commands sent through the same
// client library (rueidis) in the same run. Run:
//
//	HERALD_REQUIRE_REDIS=1 go test -run '^$' -bench . -benchtime 200000x .
//
// Results and the ratios are in docs/BENCHMARKS.md.

var payload = []byte(fmt.Sprintf("%0100d", 7)) // 100 bytes

func rawClient(b *testing.B) rueidis.Client {
	opt, err := rueidis.ParseURL(redistest.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	opt.DisableCache = true
	opt.ClientSetInfo = rueidis.DisableClientSetInfo
	c, err := rueidis.NewClient(opt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

func benchClient(b *testing.B, partitions int) (*herald.Client, string) {
	c := newClient(b, func(cfg *herald.Config) { cfg.DefaultTopic.Partitions = partitions })
	topic := "bench"
	if err := c.CreateTopic(context.Background(), topic, herald.TopicConfig{Partitions: partitions}); err != nil {
		b.Fatal(err)
	}
	return c, topic
}

// BenchmarkPublishSingle: one goroutine, one event per call (a round trip each).
func BenchmarkPublishSingle(b *testing.B) {
	ctx := context.Background()
	b.Run("raw-xadd", func(b *testing.B) {
		rc := rawClient(b)
		key := redistest.Namespace(b) + ":raw"
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := rc.Do(ctx, rc.B().Xadd().Key(key).Id("*").FieldValue().FieldValue("d", string(payload)).Build()).Error(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("herald", func(b *testing.B) {
		c, topic := benchClient(b, 1)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := c.Publish(ctx, topic, herald.Event{Data: payload}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPublishConcurrent: 64 goroutines publishing one event per call.
// Raw: XADD per call, auto-pipelined by the client. Herald: Publish per
// call, coalesced into batches per partition.
func BenchmarkPublishConcurrent(b *testing.B) {
	ctx := context.Background()
	b.Run("raw-xadd", func(b *testing.B) {
		rc := rawClient(b)
		key := redistest.Namespace(b) + ":raw"
		b.SetParallelism(32) // x GOMAXPROCS goroutines
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := rc.Do(ctx, rc.B().Xadd().Key(key).Id("*").FieldValue().FieldValue("d", string(payload)).Build()).Error(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	for _, parts := range []int{1, 8} {
		for _, ids := range []bool{false, true} {
			name := fmt.Sprintf("herald-p%d", parts)
			if ids {
				name += "-caller-ids"
			}
			b.Run(name, func(b *testing.B) {
				c, topic := benchClient(b, parts)
				var n atomic.Int64
				b.SetParallelism(32)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						ev := herald.Event{Data: payload}
						if ids {
							ev.ID = "e-" + strconv.FormatInt(n.Add(1), 10)
						}
						if _, err := c.Publish(ctx, topic, ev); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// BenchmarkPublishAsync: 16 goroutines publishing one event per call without
// waiting for each. Raw: 100 XADDs per pipeline (DoMulti) per goroutine.
// Herald: PublishAsync, each goroutine keeping up to 512 events unsettled,
// over 8 partitions; with generated ids and with caller-set ids.
func BenchmarkPublishAsync(b *testing.B) {
	ctx := context.Background()
	const publishers, window, pipeline = 16, 512, 100
	b.Run("raw-pipelined-xadd", func(b *testing.B) {
		rc := rawClient(b)
		key := redistest.Namespace(b) + ":raw"
		var left atomic.Int64
		left.Store(int64(b.N))
		b.ReportAllocs()
		parallel(publishers, func(g int) {
			cmds := make(rueidis.Commands, pipeline)
			for left.Add(-pipeline) > -pipeline {
				for j := range cmds {
					cmds[j] = rc.B().Xadd().Key(key+strconv.Itoa(g%8)).Id("*").FieldValue().FieldValue("d", string(payload)).Build()
				}
				for _, r := range rc.DoMulti(ctx, cmds...) {
					if err := r.Error(); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	})
	for _, ids := range []bool{false, true} {
		name := "herald"
		if ids {
			name += "-caller-ids"
		}
		b.Run(name, func(b *testing.B) {
			c, topic := benchClient(b, 8)
			var left atomic.Int64
			left.Store(int64(b.N))
			b.ReportAllocs()
			parallel(publishers, func(g int) {
				futs := make([]*herald.PublishFuture, window)
				for i := 0; ; i++ {
					f := &futs[i%window]
					if *f != nil {
						if _, err := (*f).Wait(ctx); err != nil {
							b.Error(err)
							return
						}
						*f = nil
					}
					if left.Add(-1) < 0 {
						break
					}
					ev := herald.Event{Data: payload}
					if ids {
						ev.ID = "e-" + strconv.Itoa(g) + "-" + strconv.Itoa(i)
					}
					*f = c.PublishAsync(ctx, topic, ev)
				}
				for _, f := range futs {
					if f != nil {
						if _, err := f.Wait(ctx); err != nil {
							b.Error(err)
						}
					}
				}
			})
		})
	}
}

// parallel runs f(0..n-1) in n goroutines and waits for them.
func parallel(n int, f func(g int)) {
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() { f(g) })
	}
	wg.Wait()
}

// BenchmarkPublishBatch: batches of 100 events. Raw: 100 XADDs in one
// pipeline (DoMulti). Herald: PublishBatch of 100.
func BenchmarkPublishBatch(b *testing.B) {
	ctx := context.Background()
	const size = 100
	b.Run("raw-pipelined-xadd", func(b *testing.B) {
		rc := rawClient(b)
		key := redistest.Namespace(b) + ":raw"
		cmds := make(rueidis.Commands, size)
		b.ReportAllocs()
		for i := 0; i < b.N; i += size {
			for j := range cmds {
				cmds[j] = rc.B().Xadd().Key(key).Id("*").FieldValue().FieldValue("d", string(payload)).Build()
			}
			for _, r := range rc.DoMulti(ctx, cmds...) {
				if err := r.Error(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("herald", func(b *testing.B) {
		c, topic := benchClient(b, 1)
		evs := make([]herald.Event, size)
		for i := range evs {
			evs[i] = herald.Event{Data: payload}
		}
		b.ReportAllocs()
		for i := 0; i < b.N; i += size {
			if _, err := c.PublishBatch(ctx, topic, evs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkConsume: b.N stored events consumed and acknowledged by one group.
// Raw: XREADGROUP COUNT 100 and one XACK per batch, one partition per goroutine.
// Herald: Subscribe with 8 handler goroutines.
func BenchmarkConsume(b *testing.B) {
	ctx := context.Background()
	const parts = 8
	fill := func(b *testing.B, rc rueidis.Client, keys []string) {
		cmds := make(rueidis.Commands, 0, 1000)
		for i := 0; i < b.N; i++ {
			cmds = append(cmds, rc.B().Xadd().Key(keys[i%len(keys)]).Id("*").FieldValue().FieldValue("d", string(payload)).Build())
			if len(cmds) == cap(cmds) || i == b.N-1 {
				for _, r := range rc.DoMulti(ctx, cmds...) {
					if err := r.Error(); err != nil {
						b.Fatal(err)
					}
				}
				cmds = cmds[:0]
			}
		}
	}
	b.Run("raw-xreadgroup-xack", func(b *testing.B) {
		rc := rawClient(b)
		ns := redistest.Namespace(b)
		keys := make([]string, parts)
		for p := range keys {
			keys[p] = fmt.Sprintf("%s:{raw/%d}", ns, p)
			rc.Do(ctx, rc.B().XgroupCreate().Key(keys[p]).Group("g").Id("0").Mkstream().Build())
		}
		fill(b, rc, keys)
		b.ReportAllocs()
		b.ResetTimer()
		var total atomic.Int64
		done := make(chan struct{}, parts)
		for _, key := range keys {
			go func() {
				defer func() { done <- struct{}{} }()
				for total.Load() < int64(b.N) {
					es, err := rc.Do(ctx, rc.B().Xreadgroup().Group("g", "c").Count(100).Block(100).Streams().Key(key).Id(">").Build()).AsXRead()
					if err != nil {
						if rueidis.IsRedisNil(err) {
							continue
						}
						b.Error(err)
						return
					}
					ids := make([]string, 0, 100)
					for _, e := range es[key] {
						ids = append(ids, e.ID)
					}
					if len(ids) == 0 {
						continue
					}
					if err := rc.Do(ctx, rc.B().Xack().Key(key).Group("g").Id(ids...).Build()).Error(); err != nil {
						b.Error(err)
						return
					}
					total.Add(int64(len(ids)))
				}
			}()
		}
		for range keys {
			<-done
		}
	})
	b.Run("herald", func(b *testing.B) {
		c, topic := benchClient(b, parts)
		rc := rawClient(b)
		keys := make([]string, parts)
		for p := range keys {
			keys[p] = fmt.Sprintf("%s:{%s/%d}:s", c.Namespace(), topic, p)
		}
		// Fill with Herald so the entries carry Herald's fields.
		evs := make([]herald.Event, 1000)
		for i := range evs {
			evs[i] = herald.Event{Data: payload}
		}
		for i := 0; i < b.N; i += len(evs) {
			n := min(len(evs), b.N-i)
			if _, err := c.PublishBatch(ctx, topic, evs[:n]); err != nil {
				b.Fatal(err)
			}
		}
		_ = rc
		b.ReportAllocs()
		b.ResetTimer()
		var handled atomic.Int64
		all := make(chan struct{})
		sub, err := c.Subscribe(ctx, topic, "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
			if handled.Add(1) == int64(b.N) {
				close(all)
			}
			return nil
		}), herald.From(herald.StartBeginning), herald.MaxInFlight(1024))
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-all:
		case <-time.After(5 * time.Minute):
			b.Fatal("not all consumed")
		}
		b.StopTimer()
		_ = sub.Drain(ctx)
	})
}

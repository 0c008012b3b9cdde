package herald_test

import (
	"context"
	"encoding/binary"
	"sort"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldbus/herald"
)

// BenchmarkBroadcast: concurrent publishers on one channel with one
// subscriber. Raw: PUBLISH through rueidis. Herald: Broadcast.
func BenchmarkBroadcast(b *testing.B) {
	ctx := context.Background()
	b.Run("raw-publish", func(b *testing.B) {
		rc := rawClient(b)
		b.SetParallelism(32)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := rc.Do(ctx, rc.B().Publish().Channel("bench").Message(string(payload)).Build()).Error(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("herald", func(b *testing.B) {
		c := newClient(b)
		b.SetParallelism(32)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Broadcast(ctx, "bench", payload); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkChannelLatency: publish-to-receive latency at a steady 20k
// messages/s. Reports p50 and p99 in microseconds.
func BenchmarkChannelLatency(b *testing.B) {
	ctx := context.Background()
	const rate = 20000
	measure := func(b *testing.B, publish func([]byte), recv <-chan []byte) {
		lat := make([]time.Duration, 0, b.N)
		done := make(chan struct{})
		go func() {
			for msg := range recv {
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(msg)))
				lat = append(lat, time.Since(sent))
				if len(lat) == b.N {
					close(done)
					return
				}
			}
		}()
		b.ResetTimer()
		interval := time.Second / rate
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if ahead := time.Duration(i)*interval - time.Since(start); ahead > 0 {
				time.Sleep(ahead) // paced, not spinning: the machine has 2 cores
			}
			msg := make([]byte, 100)
			binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
			publish(msg)
		}
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			b.Fatalf("received %d of %d", len(lat), b.N)
		}
		b.StopTimer()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
	}
	b.Run("raw", func(b *testing.B) {
		rc := rawClient(b)
		recv := make(chan []byte, 1<<16)
		dc, cancel := rc.Dedicate()
		defer cancel()
		wait := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: func(m rueidis.PubSubMessage) { recv <- []byte(m.Message) }})
		_ = wait
		if err := dc.Do(ctx, dc.B().Subscribe().Channel("lat-raw").Build()).Error(); err != nil {
			b.Fatal(err)
		}
		measure(b, func(m []byte) {
			go rc.Do(ctx, rc.B().Publish().Channel("lat-raw").Message(string(m)).Build())
		}, recv)
	})
	b.Run("herald", func(b *testing.B) {
		c := newClient(b)
		l, err := c.Listen(ctx, herald.ListenConfig{Channels: []string{"lat-herald"}, Buffer: 1 << 16})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		recv := make(chan []byte, 1<<16)
		go func() {
			for m := range l.Messages() {
				if m.Kind == "message" {
					recv <- m.Data
				}
			}
		}()
		measure(b, func(m []byte) { go func() { _, _ = c.Broadcast(ctx, "lat-herald", m) }() }, recv)
	})
}

package herald

import (
	"context"
	"fmt"
	"testing"

	"github.com/heraldbus/herald/internal/redistest"
)

// BenchmarkPublishWays compares the ways a partition writer can append
// (docs/design.md, "Publishing"), in one run, one event per Publish call:
// plain pipelined XADDs on the lane's connection (the default), the
// append script with its producer sequence, and the WATCH-guarded
// transaction (which takes batches of 64 or more and leaves smaller ones
// to the script). Run:
//
//	HERALD_REQUIRE_REDIS=1 go test -run '^$' -bench PublishWays -benchtime 3s .
func BenchmarkPublishWays(b *testing.B) {
	ctx := context.Background()
	payload := make([]byte, 100)
	for _, way := range []struct {
		name string
		way  appendWay
	}{{"plain", wayPlain}, {"script", wayScript}, {"multi", wayMulti}} {
		for _, par := range []int{0, 8, 32, -8} { // goroutines per GOMAXPROCS; 0: one goroutine; -8: 8, PublishBatch of 100
			name := fmt.Sprintf("%s/goroutines=1", way.name)
			if par > 0 {
				name = fmt.Sprintf("%s/goroutines=%dxGOMAXPROCS", way.name, par)
			}
			batch := par < 0
			if batch {
				par = -par
				name = fmt.Sprintf("%s/batch100/goroutines=%dxGOMAXPROCS", way.name, par)
			}
			b.Run(name, func(b *testing.B) {
				c, err := New(ctx, Config{URL: redistest.URL(b), Namespace: redistest.Namespace(b)})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				c.cfg.appendWay = way.way
				if err := c.CreateTopic(ctx, "bench", TopicConfig{Partitions: 8}); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				if par == 0 {
					for b.Loop() {
						if _, err := c.Publish(ctx, "bench", Event{Data: payload}); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.SetParallelism(par)
				evs := make([]Event, 100)
				for i := range evs {
					evs[i] = Event{Data: payload}
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if batch { // b.N counts events
							for k := 0; k < 99 && pb.Next(); k++ {
							}
							if _, err := c.PublishBatch(ctx, "bench", evs); err != nil {
								b.Error(err)
								return
							}
							continue
						}
						if _, err := c.Publish(ctx, "bench", Event{Data: payload}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

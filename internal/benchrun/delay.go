package benchrun

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald"
)

// DelayEvents is the number of delayed events `herald bench delay` schedules.
const DelayEvents = 10000

// DelayResult is one run of the delayed-events benchmark.
type DelayResult struct {
	Config       Config
	RedisVersion string
	RedisMode    string
	// Events scheduled, with delays spread evenly over [0, Spread).
	Events int
	Spread time.Duration
	// Scheduling is the Publish-with-At phase: Events over its wall time,
	// with the client's and redis-server's CPU time.
	Scheduling Side
	// Received counts the events handled; Early those handled before their
	// due time (should be 0); Lost those not handled within the wait.
	Received, Early, Lost int64
	// Lateness is handler time minus due time over the events on time.
	Lateness *Latency
}

// RunDelay schedules DelayEvents events with Publish(..., At(due)) from
// cfg.Publishers goroutines, each due a random delay in [0, cfg.Duration)
// after the moment it is published, on a topic of cfg.Partitions partitions with one subscribed group,
// and measures how early or late each reaches the handler (its due time
// travels in the payload). The same client moves the due events.
func RunDelay(ctx context.Context, cfg Config) (DelayResult, error) {
	b, res, err := open(ctx, "delay", cfg)
	if err != nil {
		return DelayResult{}, err
	}
	defer b.close()
	out := DelayResult{Config: b.cfg, RedisVersion: res.RedisVersion, RedisMode: res.RedisMode, Events: DelayEvents, Spread: b.cfg.Duration}
	topic, err := b.topic(ctx, "delay")
	if err != nil {
		return out, err
	}
	late := newSamples(DelayEvents)
	var early atomic.Int64
	sub, err := b.c.Subscribe(ctx, topic, "bench", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		if len(m.Data) < 8 {
			return nil
		}
		d := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(m.Data))))
		if d < 0 {
			early.Add(1)
		}
		late.add(d)
		return nil
	}))
	if err != nil {
		return out, err
	}
	defer func() { _ = sub.Drain(context.Background()) }()
	start := time.Now()
	var next atomic.Int64
	m := b.meter(ctx)
	err = forEachN(ctx, b.cfg.Publishers, func(ctx context.Context) error {
		buf := make([]byte, b.cfg.Size)
		copy(buf[8:], b.payload)
		for next.Add(1) <= DelayEvents {
			// A delay from the moment of publishing, in whole milliseconds
			// (At has millisecond precision).
			due := time.Now().Truncate(time.Millisecond).Add(time.Millisecond +
				time.Duration(rand.Int64N(int64(b.cfg.Duration/time.Millisecond)))*time.Millisecond)
			binary.BigEndian.PutUint64(buf, uint64(due.UnixNano()))
			if _, err := b.c.Publish(ctx, topic, herald.Event{Data: buf}, herald.At(due)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	out.Scheduling = m.stop(ctx, time.Now(), DelayEvents)
	wctx, cancel := context.WithTimeout(ctx, time.Until(start.Add(b.cfg.Duration+out.Scheduling.Elapsed))+receiveStall)
	defer cancel()
	waitCount(wctx, DelayEvents, b.cfg.Duration+receiveStall, late.count)
	out.Received, out.Early = late.count(), early.Load()
	out.Lost = max(0, DelayEvents-out.Received)
	out.Lateness = late.latency()
	return out, nil
}

// forEachN runs fn in n goroutines and returns the first error.
func forEachN(ctx context.Context, n int, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fe := &firstErr{cancel: cancel}
	done := make(chan struct{}, n)
	for range n {
		go func() {
			fe.set(fn(ctx))
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
	}
	return fe.err
}

// Print writes the result for people.
func (r DelayResult) Print(w io.Writer, where string) {
	fmt.Fprintf(w, "herald bench delay: redis %s %s at %s | %d partitions, payload %d B, %d publishers\n",
		r.RedisVersion, r.RedisMode, where, r.Config.Partitions, r.Config.Size, r.Config.Publishers)
	fmt.Fprintf(w, "%d events, delays spread over 0-%s\n\n", r.Events, r.Spread)
	s := r.Scheduling
	fmt.Fprintf(w, "scheduling: %.0f ev/s (Publish with At, 1 per call)  client CPU %s/ev  redis CPU %s/ev\n",
		s.PerSec(), s.ClientCPUPerEvent(), s.ServerCPUPerEvent())
	fmt.Fprintf(w, "delivered: %d  early: %d  lost: %d\n", r.Received, r.Early, r.Lost)
	if l := r.Lateness; l != nil {
		fmt.Fprintf(w, "lateness (handler time - due time): p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
			l.P50.Round(10*time.Microsecond), l.P90.Round(10*time.Microsecond), l.P99.Round(10*time.Microsecond),
			l.P999.Round(10*time.Microsecond), l.Max.Round(10*time.Microsecond))
	}
}

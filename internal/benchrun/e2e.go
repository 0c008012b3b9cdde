package benchrun

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald"
)

// receiveStall is how long a latency phase waits for more events after
// publishing stopped before it counts the missing ones as lost.
const receiveStall = 3 * time.Second

// RunE2E measures publish-to-handler latency at cfg.Rate events per second
// for cfg.Duration per side (in cfg.Rounds alternating rounds), each event
// stamped with its send time:
//
//   - Herald: Publish from cfg.Publishers goroutines, one Subscribe with
//     default options handling every event;
//   - raw: XADD from as many goroutines over the same number of streams, a
//     goroutine per stream doing XREADGROUP COUNT 100 BLOCK then XACK.
func RunE2E(ctx context.Context, cfg Config) (res Result, err error) {
	b, res, err := open(ctx, "e2e", cfg)
	if err != nil {
		return res, err
	}
	defer b.close()
	sides, err := b.alternate(ctx, []sideRun{
		{"herald Publish/Subscribe", b.heraldE2E},
		{"raw XADD/XREADGROUP", b.rawE2E},
	})
	if err != nil {
		return res, err
	}
	p := newPhase("e2e", sides[0], sides[1],
		fmt.Sprintf("Publish from %d goroutines, Subscribe with defaults, %d partitions", cfg.Publishers, cfg.Partitions),
		fmt.Sprintf("XADD from %d goroutines, XREADGROUP BLOCK + XACK per stream, %d streams", cfg.Publishers, cfg.Partitions))
	p.Rate = b.cfg.Rate
	res.Phases = []Phase{p}
	return res, nil
}

func (b *bench) expected() int {
	return int(float64(b.cfg.Rate)*b.span.Seconds()) + 1024
}

// latencySide finishes a latency phase: waits for the events still on their
// way and fills in the counts and percentiles.
func (b *bench) latencySide(ctx context.Context, m *meter, s *samples, sent int64) Side {
	last := waitCount(ctx, sent, receiveStall, s.count)
	got := s.count()
	side := m.stop(ctx, last, got)
	side.Sent, side.Lost = sent, max(0, sent-got)
	side.lat = s.sorted()
	side.Latency = percentiles(side.lat)
	return side
}

func (b *bench) heraldE2E(ctx context.Context, round int) (Side, error) {
	topic, err := b.topic(ctx, roundName("e2e", round))
	if err != nil {
		return Side{}, err
	}
	s := newSamples(b.expected())
	sub, err := b.c.Subscribe(ctx, topic, "bench", herald.HandlerFunc(func(ctx context.Context, msg *herald.Message) error {
		if d, ok := since(msg.Data); ok {
			s.add(d)
		}
		return nil
	}))
	if err != nil {
		return Side{}, err
	}
	defer func() { _ = sub.Drain(context.Background()) }()
	// The clock starts once the subscription reads every partition: an
	// ordered subscription first waits for its partition leases (a join
	// window), which is start-up, not publish-to-handler latency. One
	// unstamped event per partition, handled, says it is reading.
	for p := range b.cfg.Partitions {
		if _, err := b.c.Publish(ctx, topic, herald.Event{Data: []byte("warm")}, herald.ToPartition(p)); err != nil {
			return Side{}, err
		}
	}
	if err := waitFor(ctx, 10*time.Second, func() bool { return sub.Stats().Handled >= int64(b.cfg.Partitions) }); err != nil {
		return Side{}, fmt.Errorf("subscription did not start reading: %w", err)
	}
	m := b.meter(ctx)
	sent, err := paced(ctx, b.cfg.Rate, b.cfg.Publishers, b.cfg.Size, b.span, func(ctx context.Context, buf []byte) error {
		_, err := b.c.Publish(ctx, topic, herald.Event{Data: buf})
		return err
	})
	if err != nil {
		return Side{}, err
	}
	return b.latencySide(ctx, m, s, sent), nil
}

func (b *bench) rawE2E(ctx context.Context, round int) (Side, error) {
	keys := b.rawStreams(roundName("e2e", round))
	for _, k := range keys {
		if err := b.db.RawCreateGroup(ctx, k, "bench", "$"); err != nil {
			return Side{}, err
		}
	}
	s := newSamples(b.expected())
	rctx, stop := context.WithCancel(ctx)
	var readers sync.WaitGroup
	var readErr atomic.Pointer[error]
	for _, k := range keys {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for rctx.Err() == nil {
				_, err := b.db.RawReadAck(rctx, k, "bench", "c", rawBatch, 200, func(data []byte) {
					if d, ok := since(data); ok {
						s.add(d)
					}
				})
				if err != nil && rctx.Err() == nil {
					readErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	defer func() { stop(); readers.Wait() }()
	var rr atomic.Uint64
	m := b.meter(ctx)
	sent, err := paced(ctx, b.cfg.Rate, b.cfg.Publishers, b.cfg.Size, b.span, func(ctx context.Context, buf []byte) error {
		return b.db.RawXAdd(ctx, keys[rr.Add(1)%uint64(len(keys))], buf)
	})
	if err != nil {
		return Side{}, err
	}
	side := b.latencySide(ctx, m, s, sent)
	if p := readErr.Load(); p != nil {
		return Side{}, *p
	}
	return side, nil
}

// waitFor polls cond every millisecond until it holds or limit passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

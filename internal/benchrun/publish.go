package benchrun

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald"
)

// rawBatch is the number of XADDs per raw pipeline (DoMulti), and the batch
// size of PublishBatch phases.
const rawBatch = 100

// RunPublish measures publish throughput for cfg.Duration per side, in
// cfg.Rounds alternating rounds (Config.Rounds):
//
//   - "publish": Herald Publish, one event per call from cfg.Publishers
//     goroutines (Herald coalesces concurrent calls into batches);
//   - "publish-batch": Herald PublishBatch of 100 events per call from the
//     same goroutines;
//   - raw, for both: pipelined XADD, 100 per DoMulti round trip, from the same
//     number of goroutines over the same number of streams;
//   - "publish-xadd": the "publish" figure of Herald beside one XADD per call
//     from as many goroutines (rueidis pipelines concurrent calls by itself),
//     the like-for-like baseline of one event per call.
func RunPublish(ctx context.Context, cfg Config) (res Result, err error) {
	b, res, err := open(ctx, "publish", cfg)
	if err != nil {
		return res, err
	}
	defer b.close()
	sides, err := b.alternate(ctx, []sideRun{
		{"raw XADD pipelined", func(ctx context.Context, r int) (Side, error) { return b.rawPublish(ctx, roundName("publish", r)) }},
		{"raw XADD", func(ctx context.Context, r int) (Side, error) {
			return b.rawPublishSingle(ctx, roundName("publish-xadd", r))
		}},
		{"herald Publish", func(ctx context.Context, r int) (Side, error) {
			return b.heraldPublish(ctx, roundName("publish", r), 1)
		}},
		{"herald PublishBatch", func(ctx context.Context, r int) (Side, error) {
			return b.heraldPublish(ctx, roundName("publish-batch", r), rawBatch)
		}},
		{"herald PublishAsync", func(ctx context.Context, r int) (Side, error) {
			return b.heraldPublishAsync(ctx, roundName("publish-async", r), false)
		}},
		{"herald PublishAsync with ids", func(ctx context.Context, r int) (Side, error) {
			return b.heraldPublishAsync(ctx, roundName("publish-ids", r), true)
		}},
	})
	if err != nil {
		return res, err
	}
	raw, rawSingle, single, batch, async, ids := sides[0], sides[1], sides[2], sides[3], sides[4], sides[5]
	rawDoes := fmt.Sprintf("XADD pipelined %d per round trip, %d goroutines", rawBatch, cfg.Publishers)
	singleDoes := fmt.Sprintf("Publish, 1 event per call, %d goroutines", cfg.Publishers)
	res.Phases = []Phase{
		newPhase("publish-async", async, raw,
			fmt.Sprintf("PublishAsync, %d goroutines, up to %d unsettled each", cfg.Publishers, asyncWindow), rawDoes),
		newPhase("publish-ids", ids, raw,
			fmt.Sprintf("PublishAsync with caller-set ids (deduplicated), %d goroutines, up to %d unsettled each", cfg.Publishers, asyncWindow), rawDoes),
		newPhase("publish", single, raw, singleDoes, rawDoes),
		newPhase("publish-batch", batch, raw,
			fmt.Sprintf("PublishBatch, %d events per call, %d goroutines", rawBatch, cfg.Publishers), rawDoes),
		newPhase("publish-xadd", single, rawSingle, singleDoes,
			fmt.Sprintf("XADD, 1 per call, %d goroutines (auto-pipelined by the client)", cfg.Publishers)),
	}
	return res, nil
}

// heraldPublish publishes to a fresh topic for cfg.Duration, per events per call.
func (b *bench) heraldPublish(ctx context.Context, phase string, per int) (Side, error) {
	topic, err := b.topic(ctx, phase)
	if err != nil {
		return Side{}, err
	}
	evs := make([]herald.Event, per)
	for i := range evs {
		evs[i] = herald.Event{Data: b.payload}
	}
	side, err := b.timed(ctx, func(ctx context.Context, _ int, deadline time.Time, n *atomic.Int64) error {
		for ctx.Err() == nil && time.Now().Before(deadline) {
			var err error
			if per == 1 {
				_, err = b.c.Publish(ctx, topic, evs[0])
			} else {
				_, err = b.c.PublishBatch(ctx, topic, evs)
			}
			if err != nil {
				return err
			}
			n.Add(int64(per))
		}
		return nil
	})
	return b.withBatches(side, topic), err
}

// withBatches fills in side.Batches from the client's metrics of topic
// (a fresh topic per phase).
func (b *bench) withBatches(side Side, topic string) Side {
	for _, tm := range b.c.Metrics().Topics {
		if tm.Topic == topic {
			side.Batches = tm.AppendDuration.Count
		}
	}
	return side
}

// timed runs body in cfg.Publishers goroutines until b.span has
// passed (body checks the deadline) and measures the events it counts.
func (b *bench) timed(ctx context.Context, body func(ctx context.Context, g int, deadline time.Time, n *atomic.Int64) error) (Side, error) {
	var n atomic.Int64
	m := b.meter(ctx)
	deadline := m.start.Add(b.span)
	err := forEach(ctx, b.cfg.Publishers, func(ctx context.Context, g int) error { return body(ctx, g, deadline, &n) })
	if err != nil {
		return Side{}, err
	}
	if err := ctx.Err(); err != nil {
		return Side{}, err
	}
	return m.stop(ctx, time.Now(), n.Load()), nil
}

// asyncWindow is how many PublishAsync futures one publishing goroutine
// keeps unsettled: it waits for the oldest when it has that many.
const asyncWindow = 512

// heraldPublishAsync publishes to a fresh topic for cfg.Duration with
// PublishAsync, each goroutine keeping up to asyncWindow events unsettled;
// with ids, every event carries a unique caller-set id (deduplicated).
func (b *bench) heraldPublishAsync(ctx context.Context, phase string, ids bool) (Side, error) {
	topic, err := b.topic(ctx, phase)
	if err != nil {
		return Side{}, err
	}
	side, err := b.timed(ctx, func(ctx context.Context, g int, deadline time.Time, n *atomic.Int64) error {
		window := make([]*herald.PublishFuture, asyncWindow)
		ev := herald.Event{Data: b.payload}
		prefix := fmt.Sprintf("%s-%d-", b.id, g)
		for sent := 0; ctx.Err() == nil && time.Now().Before(deadline); sent++ {
			slot := &window[sent%asyncWindow]
			if *slot != nil {
				if _, err := (*slot).Wait(ctx); err != nil {
					return err
				}
				n.Add(1)
			}
			if ids {
				ev.ID = prefix + strconv.Itoa(sent)
			}
			*slot = b.c.PublishAsync(ctx, topic, ev)
		}
		for _, f := range window {
			if f == nil {
				continue
			}
			if _, err := f.Wait(ctx); err != nil {
				return err
			}
			n.Add(1)
		}
		return nil
	})
	return b.withBatches(side, topic), err
}

// rawPublish sends pipelined XADDs to fresh streams for cfg.Duration.
func (b *bench) rawPublish(ctx context.Context, phase string) (Side, error) {
	keys := b.rawStreams(phase)
	return b.timed(ctx, func(ctx context.Context, g int, deadline time.Time, n *atomic.Int64) error {
		for i := g; ctx.Err() == nil && time.Now().Before(deadline); i++ {
			if err := b.db.RawXAddBatch(ctx, keys[i%len(keys)], b.payload, rawBatch); err != nil {
				return err
			}
			n.Add(rawBatch)
		}
		return nil
	})
}

// rawPublishSingle sends one XADD per call to fresh streams for cfg.Duration.
func (b *bench) rawPublishSingle(ctx context.Context, phase string) (Side, error) {
	keys := b.rawStreams(phase)
	return b.timed(ctx, func(ctx context.Context, g int, deadline time.Time, n *atomic.Int64) error {
		for i := g; ctx.Err() == nil && time.Now().Before(deadline); i++ {
			if err := b.db.RawXAdd(ctx, keys[i%len(keys)], b.payload); err != nil {
				return err
			}
			n.Add(1)
		}
		return nil
	})
}

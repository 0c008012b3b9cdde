package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/heraldbus/herald"
)

// library is one event library under test. Every method gets a Redis that
// was flushed before; names are fixed because each measurement starts clean.
type library interface {
	name() string
	// publisher readies a publisher; publish sends one event and returns
	// once the library reports it stored. stored counts what Redis holds.
	publisher(ctx context.Context) (publish func(ctx context.Context) error, stored func(ctx context.Context) (int64, error), closeFn func(), err error)
	// fill stores n events for consume (not measured).
	fill(ctx context.Context, n int) error
	// consume starts the library's consumer on what fill stored; wait
	// returns once n events were handled AND Redis shows each of them
	// acknowledged or completed.
	consume(ctx context.Context, n int) (wait func(ctx context.Context) error, closeFn func(), err error)
}

// fastPublisher is implemented by libraries with a faster way to publish
// from many goroutines than one event per blocking call: mode "batch"
// (peerBatch events per call) or "async" (calls that return before the
// event is stored). ok false: the library has no such API, and the
// workload measures publisher instead. Each publishing goroutine gets a
// worker of its own: publish returns how many events it sent, flush returns
// once every event the worker sent is stored.
type fastPublisher interface {
	fastPublisher(ctx context.Context, mode string) (worker func() (publish func(ctx context.Context) (int, error), flush func(ctx context.Context) error),
		stored func(ctx context.Context) (int64, error), closeFn func(ctx context.Context) error, ok bool, err error)
}

const topicName = "bench"

// asyncWindow bounds Herald's unsettled PublishAsync events per goroutine
// in the fastest-API workload; peerBatch is Watermill's messages per call.
const (
	asyncWindow = 512
	peerBatch   = 100
)

// parallel calls fn from g goroutines until fn errs or returns false.
func parallel(ctx context.Context, g int, fn func(ctx context.Context) (bool, error)) error {
	return parallelWorkers(ctx, g, func(ctx context.Context) error {
		for ctx.Err() == nil {
			more, err := fn(ctx)
			if err != nil || !more {
				return err
			}
		}
		return nil
	})
}

// parallelWorkers runs fn once in each of g goroutines; the first error
// cancels the others' ctx and is returned.
func parallelWorkers(ctx context.Context, g int, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range g {
		wg.Go(func() {
			if err := fn(ctx); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// fillN calls add from 16 goroutines until n calls succeeded.
func fillN(ctx context.Context, n int, add func(ctx context.Context) error) error {
	var next atomic.Int64
	return parallel(ctx, 16, func(ctx context.Context) (bool, error) {
		if next.Add(1) > int64(n) {
			return false, nil
		}
		return true, add(ctx)
	})
}

// waitUntil polls cond every millisecond until it holds or ctx ends.
func waitUntil(ctx context.Context, what string, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// --- Herald ---

type heraldLib struct {
	url        string
	partitions int
	payload    []byte
}

func (h *heraldLib) name() string { return "Herald" }

func (h *heraldLib) open(ctx context.Context) (*herald.Client, error) {
	c, err := herald.New(ctx, herald.Config{URL: h.url})
	if err != nil {
		return nil, err
	}
	if err := c.CreateTopic(ctx, topicName, herald.TopicConfig{Partitions: h.partitions}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (h *heraldLib) publisher(ctx context.Context) (func(context.Context) error, func(context.Context) (int64, error), func(), error) {
	c, err := h.open(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	publish := func(ctx context.Context) error {
		_, err := c.Publish(ctx, topicName, herald.Event{Data: h.payload})
		return err
	}
	stored := func(ctx context.Context) (int64, error) {
		ti, err := c.TopicInfo(ctx, topicName)
		return ti.Length, err
	}
	return publish, stored, func() { c.Close() }, nil
}

func (h *heraldLib) fastPublisher(ctx context.Context, mode string) (func() (func(context.Context) (int, error), func(context.Context) error),
	func(context.Context) (int64, error), func(context.Context) error, bool, error) {
	c, err := h.open(ctx)
	if err != nil {
		return nil, nil, nil, false, err
	}
	stored := func(ctx context.Context) (int64, error) {
		ti, err := c.TopicInfo(ctx, topicName)
		return ti.Length, err
	}
	closeFn := func(context.Context) error { return c.Close() }
	if mode == "batch" {
		evs := make([]herald.Event, peerBatch)
		for i := range evs {
			evs[i] = herald.Event{Data: h.payload}
		}
		worker := func() (func(context.Context) (int, error), func(context.Context) error) {
			publish := func(ctx context.Context) (int, error) {
				_, err := c.PublishBatch(ctx, topicName, evs)
				return len(evs), err
			}
			return publish, func(context.Context) error { return nil }
		}
		return worker, stored, closeFn, true, nil
	}
	// Each goroutine keeps up to asyncWindow futures unsettled and waits for
	// the oldest when it has that many.
	worker := func() (func(context.Context) (int, error), func(context.Context) error) {
		ring := make([]*herald.PublishFuture, asyncWindow)
		next := 0
		publish := func(ctx context.Context) (int, error) {
			if old := ring[next]; old != nil {
				if _, err := old.Wait(ctx); err != nil {
					return 0, err
				}
			}
			ring[next] = c.PublishAsync(ctx, topicName, herald.Event{Data: h.payload})
			next = (next + 1) % len(ring)
			return 1, nil
		}
		flush := func(ctx context.Context) error {
			for _, f := range ring {
				if f == nil {
					continue
				}
				if _, err := f.Wait(ctx); err != nil {
					return err
				}
			}
			return nil
		}
		return publish, flush
	}
	return worker, stored, closeFn, true, nil
}

func (h *heraldLib) fill(ctx context.Context, n int) error {
	c, err := h.open(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	evs := make([]herald.Event, 1000)
	for i := range evs {
		evs[i] = herald.Event{Data: h.payload}
	}
	for done := 0; done < n; done += len(evs) {
		if _, err := c.PublishBatch(ctx, topicName, evs[:min(len(evs), n-done)]); err != nil {
			return err
		}
	}
	return nil
}

func (h *heraldLib) consume(ctx context.Context, n int) (func(context.Context) error, func(), error) {
	c, err := h.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	var handled atomic.Int64
	sub, err := c.Subscribe(ctx, topicName, "bench", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		handled.Add(1)
		return nil
	}), herald.From(herald.StartBeginning)) // default options: 8 handler goroutines
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	wait := func(ctx context.Context) error {
		if err := waitUntil(ctx, "Herald handlers", func() (bool, error) { return handled.Load() >= int64(n), nil }); err != nil {
			return fmt.Errorf("%w (handled %d of %d)", err, handled.Load(), n)
		}
		// Handled counts before the acknowledgement is sent: wait for Redis
		// to hold nothing pending and nothing undelivered.
		return waitUntil(ctx, "Herald acknowledgements", func() (bool, error) {
			gs, err := c.Groups(ctx, topicName)
			if err != nil {
				return false, err
			}
			return len(gs) == 1 && gs[0].Pending == 0 && gs[0].Lag == 0, nil
		})
	}
	return wait, func() { _ = sub.Drain(context.Background()); _ = c.Close() }, nil
}

// --- Watermill (Redis Streams Pub/Sub) ---

type watermillLib struct {
	addr    string
	payload []byte
}

func (w *watermillLib) name() string { return "Watermill" }

// client returns a go-redis client; watermill's Close closes the client it
// was given, so each publisher and subscriber gets its own.
func (w *watermillLib) client() *redis.Client { return redis.NewClient(&redis.Options{Addr: w.addr}) }

func (w *watermillLib) newPublisher() (*redisstream.Publisher, error) {
	return redisstream.NewPublisher(redisstream.PublisherConfig{Client: w.client()}, nil)
}

func (w *watermillLib) publisher(ctx context.Context) (func(context.Context) error, func(context.Context) (int64, error), func(), error) {
	p, err := w.newPublisher()
	if err != nil {
		return nil, nil, nil, err
	}
	admin := w.client()
	publish := func(ctx context.Context) error {
		return p.Publish(topicName, message.NewMessage(watermill.NewUUID(), w.payload))
	}
	stored := func(ctx context.Context) (int64, error) { return admin.XLen(ctx, topicName).Result() }
	return publish, stored, func() { p.Close(); admin.Close() }, nil
}

func (w *watermillLib) fastPublisher(ctx context.Context, mode string) (func() (func(context.Context) (int, error), func(context.Context) error),
	func(context.Context) (int64, error), func(context.Context) error, bool, error) {
	if mode != "batch" {
		return nil, nil, nil, false, nil // no asynchronous publish
	}
	p, err := w.newPublisher()
	if err != nil {
		return nil, nil, nil, false, err
	}
	admin := w.client()
	worker := func() (func(context.Context) (int, error), func(context.Context) error) {
		publish := func(ctx context.Context) (int, error) {
			msgs := make([]*message.Message, peerBatch)
			for i := range msgs {
				msgs[i] = message.NewMessage(watermill.NewUUID(), w.payload)
			}
			return peerBatch, p.Publish(topicName, msgs...)
		}
		return publish, func(context.Context) error { return nil }
	}
	stored := func(ctx context.Context) (int64, error) { return admin.XLen(ctx, topicName).Result() }
	closeFn := func(context.Context) error { p.Close(); return admin.Close() }
	return worker, stored, closeFn, true, nil
}

func (w *watermillLib) fill(ctx context.Context, n int) error {
	p, err := w.newPublisher()
	if err != nil {
		return err
	}
	defer p.Close()
	return fillN(ctx, n, func(ctx context.Context) error {
		return p.Publish(topicName, message.NewMessage(watermill.NewUUID(), w.payload))
	})
}

func (w *watermillLib) consume(ctx context.Context, n int) (func(context.Context) error, func(), error) {
	// One subscriber in a consumer group, defaults otherwise: it reads and
	// acknowledges one entry at a time (that is its design).
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: w.client(), ConsumerGroup: "bench"}, nil)
	if err != nil {
		return nil, nil, err
	}
	admin := w.client()
	sctx, cancel := context.WithCancel(ctx)
	msgs, err := sub.Subscribe(sctx, topicName)
	if err != nil {
		cancel()
		sub.Close()
		admin.Close()
		return nil, nil, err
	}
	var handled atomic.Int64
	go func() {
		for m := range msgs {
			handled.Add(1)
			m.Ack()
		}
	}()
	wait := func(ctx context.Context) error {
		if err := waitUntil(ctx, "Watermill messages", func() (bool, error) { return handled.Load() >= int64(n), nil }); err != nil {
			return fmt.Errorf("%w (handled %d of %d)", err, handled.Load(), n)
		}
		// Ack returns before the XACK is sent: wait until none is pending.
		return waitUntil(ctx, "Watermill XACKs", func() (bool, error) {
			p, err := admin.XPending(ctx, topicName, "bench").Result()
			if err != nil {
				return false, err
			}
			return p.Count == 0, nil
		})
	}
	return wait, func() { cancel(); sub.Close(); admin.Close() }, nil
}

// --- asynq ---

type asynqLib struct {
	addr        string
	payload     []byte
	concurrency int
}

func (a *asynqLib) name() string { return "asynq" }

const asynqQueue = "bench"

func (a *asynqLib) opt() asynq.RedisClientOpt { return asynq.RedisClientOpt{Addr: a.addr} }

func (a *asynqLib) enqueue(c *asynq.Client) error {
	_, err := c.Enqueue(asynq.NewTask("bench", a.payload), asynq.Queue(asynqQueue))
	return err
}

func (a *asynqLib) publisher(ctx context.Context) (func(context.Context) error, func(context.Context) (int64, error), func(), error) {
	c := asynq.NewClient(a.opt())
	ins := asynq.NewInspector(a.opt())
	stored := func(ctx context.Context) (int64, error) {
		qi, err := ins.GetQueueInfo(asynqQueue)
		if err != nil {
			return 0, err
		}
		return int64(qi.Size), nil
	}
	return func(context.Context) error { return a.enqueue(c) }, stored, func() { c.Close(); ins.Close() }, nil
}

func (a *asynqLib) fill(ctx context.Context, n int) error {
	c := asynq.NewClient(a.opt())
	defer c.Close()
	return fillN(ctx, n, func(context.Context) error { return a.enqueue(c) })
}

func (a *asynqLib) consume(ctx context.Context, n int) (func(context.Context) error, func(), error) {
	srv := asynq.NewServer(a.opt(), asynq.Config{Concurrency: a.concurrency, Queues: map[string]int{asynqQueue: 1},
		LogLevel: asynq.ErrorLevel})
	ins := asynq.NewInspector(a.opt())
	var handled atomic.Int64
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		handled.Add(1)
		return nil
	}))
	if err != nil {
		ins.Close()
		return nil, nil, err
	}
	wait := func(ctx context.Context) error {
		if err := waitUntil(ctx, "asynq handlers", func() (bool, error) { return handled.Load() >= int64(n), nil }); err != nil {
			return fmt.Errorf("%w (handled %d of %d)", err, handled.Load(), n)
		}
		// A task is complete once its "done" script removed it from the
		// active list: wait until the queue holds nothing.
		return waitUntil(ctx, "asynq completions", func() (bool, error) {
			qi, err := ins.GetQueueInfo(asynqQueue)
			if err != nil {
				return false, err
			}
			return qi.Size == 0 && qi.Active == 0, nil
		})
	}
	return wait, func() { srv.Shutdown(); ins.Close() }, nil
}

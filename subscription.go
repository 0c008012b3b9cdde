package herald

import (
	"context"
	"errors"
	"fmt"
	"github.com/heraldbus/herald/internal/celexpr"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/rdb"
)

// Subscription is a running consumer of one group on one topic.
//
// Goroutines and their owners: one reader per partition, a janitor
// (keep-alive and reclaim) and a retry scheduler produce deliveries; the
// handler workers consume them; one acker batches acknowledgements. Shutdown
// order: producers stop first, then the workers finish (Drain) or skip
// (Stop) what is queued, then the acker flushes, then Done is closed.
type Subscription struct {
	c        *Client
	t        *topic
	group    string
	h        Handler
	o        subOptions
	explicit bool // consumer name set by the caller

	fetchCtx      context.Context
	fetchCancel   context.CancelFunc
	handlerCtx    context.Context
	handlerCancel context.CancelFunc

	tokens   chan struct{} // one per delivery in flight
	work     chan *delivery
	acks     chan *delivery
	retryDue chan time.Time

	mu       sync.Mutex
	inflight map[*delivery]struct{}
	released []*delivery

	producers  sync.WaitGroup
	workers    sync.WaitGroup
	ackerDone  chan struct{}
	finishOnce sync.Once
	done       chan struct{}
	err        atomic.Pointer[error]

	stats subStats
}

type subStats struct {
	handled, failed, retried, dead, reclaimed, trimmed, errors, filtered atomic.Int64
}

// SubscriptionStats are counters of a subscription since it started.
type SubscriptionStats struct {
	Handled      int64 // handler returned nil and the event was acknowledged
	Failed       int64 // handler returned an error
	Retried      int64 // failures scheduled for a retry
	DeadLettered int64 // failures moved to the dead-letter stream
	Reclaimed    int64 // entries taken over from silent consumers
	Trimmed      int64 // pending entries whose payload was trimmed away: acked and dropped
	RedisErrors  int64 // Redis errors met (and retried)
	Filtered     int64 // events the Filter condition rejected: acknowledged unhandled
}

type delivery struct {
	part    int
	stream  string
	id      string
	msg     *Message
	touched time.Time
}

// Subscribe starts consuming topic as a member of group, calling h for each
// event. The group is created when missing (from now, or the beginning with
// From(StartBeginning)), and the topic too unless automatic creation is off.
// The subscription runs until ctx is done, Stop or Drain is called, or the
// Client is closed.
func (c *Client) Subscribe(ctx context.Context, topicName, group string, h Handler, opts ...SubscribeOption) (*Subscription, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, invalid("handler is nil")
	}
	if err := ValidateName("group", group); err != nil {
		return nil, err
	}
	var o subOptions
	for _, opt := range opts {
		opt(&o)
	}
	explicit := o.consumer != ""
	if err := o.fill(); err != nil {
		return nil, err
	}
	t, err := c.topic(ctx, topicName, true)
	if err != nil {
		return nil, err
	}
	start := "$"
	if o.start == StartBeginning {
		start = "0"
	}
	for _, pk := range t.parts {
		if err := c.db.EnsureGroup(ctx, pk, group, start); err != nil {
			return nil, fmt.Errorf("herald: create group %q on %s: %w", group, pk.Stream, err)
		}
	}
	s := &Subscription{c: c, t: t, group: group, h: h, o: o, explicit: explicit,
		tokens: make(chan struct{}, o.maxInFlight), work: make(chan *delivery, o.maxInFlight),
		acks: make(chan *delivery, o.maxInFlight), retryDue: make(chan time.Time, 64),
		inflight: map[*delivery]struct{}{}, ackerDone: make(chan struct{}), done: make(chan struct{})}
	for range o.maxInFlight {
		s.tokens <- struct{}{}
	}
	s.fetchCtx, s.fetchCancel = context.WithCancel(context.Background())
	s.handlerCtx, s.handlerCancel = context.WithCancel(context.Background())
	if err := c.addSub(s); err != nil {
		return nil, err
	}
	for p := range t.parts {
		s.producers.Add(1)
		go s.reader(p)
	}
	s.producers.Add(2)
	go s.janitor()
	go s.scheduler()
	for range o.concurrency {
		s.workers.Add(1)
		go s.worker()
	}
	go s.acker()
	go func() {
		select {
		case <-ctx.Done():
			s.Stop()
		case <-s.done:
		}
	}()
	c.log.Debug("subscribed", "topic", topicName, "group", group, "consumer", o.consumer)
	return s, nil
}

// Topic, Group and ConsumerName identify the subscription.
func (s *Subscription) Topic() string { return s.t.name }

// Group is the consumer group.
func (s *Subscription) Group() string { return s.group }

// ConsumerName is this consumer's name in the group.
func (s *Subscription) ConsumerName() string { return s.o.consumer }

// Done is closed when the subscription has stopped.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is the error that stopped the subscription by itself, or nil. Redis
// errors are retried with backoff rather than ending the subscription, so
// today it is nil after every stop; it is kept for errors that cannot be
// retried.
func (s *Subscription) Err() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SubscriptionStats {
	return SubscriptionStats{Handled: s.stats.handled.Load(), Failed: s.stats.failed.Load(), Retried: s.stats.retried.Load(),
		DeadLettered: s.stats.dead.Load(), Reclaimed: s.stats.reclaimed.Load(), Trimmed: s.stats.trimmed.Load(),
		RedisErrors: s.stats.errors.Load(), Filtered: s.stats.filtered.Load()}
}

// Stop stops reading and cancels running handlers' contexts without waiting.
// Events read but not handled stay pending and are redelivered after the
// visibility timeout. Done is closed when everything has stopped.
func (s *Subscription) Stop() {
	s.handlerCancel()
	s.fetchCancel()
	s.finishOnce.Do(func() { go s.finish() })
}

// Drain stops reading, lets the events already read be handled and their
// acknowledgements be sent, and returns when all is done or ctx ends (then
// it stops as Stop does and returns ctx.Err() at once, without waiting for
// running handlers: Done says when they have returned).
func (s *Subscription) Drain(ctx context.Context) error {
	s.fetchCancel()
	s.finishOnce.Do(func() { go s.finish() })
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.Stop() // Done is closed once running handlers have returned
		return ctx.Err()
	}
}

func (s *Subscription) finish() {
	s.producers.Wait()
	close(s.work)
	s.workers.Wait()
	s.flushReleased()
	close(s.acks)
	<-s.ackerDone
	s.releaseOwnPending()
	s.handlerCancel()
	s.c.removeSub(s)
	close(s.done)
}

// take reserves up to n in-flight slots, waiting for the first.
func (s *Subscription) take(n int) int {
	select {
	case <-s.tokens:
	case <-s.fetchCtx.Done():
		return 0
	}
	got := 1
	for got < n {
		select {
		case <-s.tokens:
			got++
		default:
			return got
		}
	}
	return got
}

func (s *Subscription) give(n int) {
	for range n {
		s.tokens <- struct{}{}
	}
}

func (s *Subscription) reader(p int) {
	defer s.producers.Done()
	pk := s.t.parts[p]
	backoff := newBackoff()
	if s.explicit {
		// A restarted consumer first gets back what it held.
		if n := s.take(s.o.maxInFlight); n > 0 {
			es, err := s.c.db.ReadOwnPending(s.fetchCtx, pk, s.group, s.o.consumer, int64(n))
			if err != nil {
				s.noteErr("read own pending", err)
			}
			s.dispatchAll(p, es, n)
		}
	}
	// Each reader takes at most its share of the in-flight slots, so that
	// one partition blocked in a read does not starve the others.
	share := max(1, min(s.o.readBatch, s.o.maxInFlight/len(s.t.parts)))
	for s.fetchCtx.Err() == nil {
		n := s.take(share)
		if n == 0 {
			return
		}
		es, err := s.c.db.ReadGroup(s.fetchCtx, pk, s.group, s.o.consumer, int64(n), s.o.block.Milliseconds())
		if err != nil {
			s.give(n)
			if s.fetchCtx.Err() != nil {
				return
			}
			s.noteErr("read", err)
			if rdb.IsNoGroup(err) {
				s.recoverGroup(pk)
				continue
			}
			backoff.wait(s.fetchCtx)
			continue
		}
		backoff.reset()
		s.dispatchAll(p, es, n)
	}
}

// recoverGroup recreates a group lost with a Redis restart (and the topic's
// metadata if that went too). It starts from the beginning of what is there:
// after a restart without persistence the stream holds only new events.
func (s *Subscription) recoverGroup(pk rdb.PartKeys) {
	s.c.restoreTopic(s.fetchCtx, s.t)
	if err := s.c.db.EnsureGroup(s.fetchCtx, pk, s.group, "0"); err != nil {
		s.noteErr("recreate group", err)
		return
	}
	s.c.log.Warn("consumer group was missing (Redis restarted without persistence?); recreated from the start of the stream",
		"topic", s.t.name, "group", s.group, "stream", pk.Stream)
}

// dispatchAll queues entries for the workers. have slots were reserved;
// extra ones are reserved here, unused ones returned.
func (s *Subscription) dispatchAll(p int, es []rdb.Entry, have int) {
	for i, e := range es {
		if i >= have {
			if s.take(1) == 0 {
				return // stopping: the rest stay pending and are reclaimed later
			}
		}
		s.dispatch(p, e)
	}
	if len(es) < have {
		s.give(have - len(es))
	}
}

// dispatch queues one entry; its slot is already reserved.
func (s *Subscription) dispatch(p int, e rdb.Entry) {
	d := &delivery{part: p, stream: e.Stream, id: e.ID, touched: time.Now()}
	if e.Pairs == nil { // trimmed while pending: nothing to deliver
		s.stats.trimmed.Add(1)
		s.c.log.Warn("pending entry was trimmed before it was handled; acked and dropped", "topic", s.t.name, "stream", e.Stream, "id", e.ID)
		s.acks <- d
		s.give(1)
		return
	}
	ev, meta, err := codec.Decode(e.Pairs, e.ID)
	m := &Message{Event: Event(ev), Topic: s.t.name, Group: s.group, Partition: p, Position: e.ID, Attempt: meta.Attempt}
	if meta.Origin != "" {
		m.Position = meta.Origin
	}
	if m.Attempt == 0 {
		m.Attempt = 1
	}
	d.msg = m
	if err != nil {
		// Not a Herald event (written by hand?): dead-letter it with the reason.
		s.fail(d, Permanent(err))
		s.give(1)
		return
	}
	s.mu.Lock()
	s.inflight[d] = struct{}{}
	s.mu.Unlock()
	s.work <- d
}

func (s *Subscription) worker() {
	defer s.workers.Done()
	for d := range s.work {
		if s.handlerCtx.Err() != nil {
			s.untrack(d) // stopping: hand it back unhandled
			s.release(d)
			s.give(1)
			continue
		}
		if s.o.filterPrg != nil && !s.matches(d.msg) {
			s.untrack(d)
			s.stats.filtered.Add(1)
			s.acks <- d
			s.give(1)
			continue
		}
		err := s.call(d.msg)
		s.untrack(d)
		switch {
		case err == nil:
			s.stats.handled.Add(1)
			s.acks <- d
		case s.handlerCtx.Err() != nil || errors.Is(err, ErrRelease):
			s.release(d) // handed back, or failed while we stopped: not counted as an attempt
		default:
			s.fail(d, err)
		}
		s.give(1)
	}
}

// release records an entry that was read but not handled; finish hands
// them back so that other consumers reclaim them at once.
func (s *Subscription) release(d *delivery) {
	s.mu.Lock()
	s.released = append(s.released, d)
	s.mu.Unlock()
}

func (s *Subscription) flushReleased() {
	s.mu.Lock()
	rel := s.released
	s.released = nil
	s.mu.Unlock()
	byStream := map[string][]string{}
	for _, d := range rel {
		byStream[d.stream] = append(byStream[d.stream], d.id)
	}
	for stream, ids := range byStream {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.c.db.Release(ctx, stream, s.group, s.o.consumer, ids, s.o.visibility.Milliseconds()); err != nil {
			s.noteErr("release", err)
		}
		cancel()
	}
}

func (s *Subscription) matches(m *Message) bool {
	ok, _ := s.o.filterPrg.Match(celexpr.NewActivation(&celexpr.Vars{ID: m.ID, Type: m.Type, Source: m.Source,
		Subject: m.Subject, Key: m.Key, ContentType: m.ContentType, Headers: m.Headers, Time: m.Time, Data: m.Data}))
	return ok
}

// releaseOwnPending hands back everything still pending for this consumer
// when it stops: entries of a read that was cut off by the stop, acks that
// could not be sent. Other consumers take them at their next reclaim instead
// of after the visibility timeout.
func (s *Subscription) releaseOwnPending() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, pk := range s.t.parts {
		for _, stream := range []string{pk.Stream, pk.Retry(s.group)} {
			ids, err := s.c.db.PendingOf(ctx, stream, s.group, s.o.consumer, 10000)
			if err != nil || len(ids) == 0 {
				continue
			}
			if err := s.c.db.Release(ctx, stream, s.group, s.o.consumer, ids, s.o.visibility.Milliseconds()); err != nil {
				s.noteErr("release on stop", err)
			}
		}
	}
}

func (s *Subscription) call(m *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v\n%s", r, debug.Stack())
		}
	}()
	return s.h.Handle(s.handlerCtx, m)
}

func (s *Subscription) untrack(d *delivery) {
	s.mu.Lock()
	delete(s.inflight, d)
	s.mu.Unlock()
}

// fail records a handler error: schedule a retry, or dead-letter.
func (s *Subscription) fail(d *delivery, herr error) {
	s.stats.failed.Add(1)
	now := time.Now()
	f := rdb.Failure{Keys: s.t.parts[d.part], Source: d.stream, Group: s.group, ID: d.id,
		NextAttempt: d.msg.Attempt + 1, Err: herr.Error(), Origin: d.msg.Position, NowMS: now.UnixMilli(), DLQMaxLen: 100000}
	var due time.Time
	if !IsPermanent(herr) && d.msg.Attempt < s.o.maxAttempts {
		due = now.Add(s.o.retryDelay(d.msg.Attempt))
		f.DueMS = due.UnixMilli()
	}
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := s.c.db.Fail(ctx, f)
		cancel()
		if err == nil {
			switch res {
			case "scheduled":
				s.stats.retried.Add(1)
				select {
				case s.retryDue <- due:
				default:
				}
			case "dead":
				s.stats.dead.Add(1)
				s.c.log.Warn("event dead-lettered", "topic", s.t.name, "group", s.group, "position", d.msg.Position,
					"attempts", d.msg.Attempt, "err", herr)
			case "gone":
				s.stats.trimmed.Add(1)
			}
			return
		}
		s.noteErr("record failure", err)
		if !rdb.Transient(err) || try >= 2 {
			return // the entry stays pending and is reclaimed after the visibility timeout
		}
		time.Sleep(time.Duration(50*(try+1)) * time.Millisecond)
	}
}

func (s *Subscription) acker() {
	defer close(s.ackerDone)
	for first := range s.acks {
		batch := []*delivery{first}
	more:
		for len(batch) < 4096 {
			select {
			case d, ok := <-s.acks:
				if !ok {
					break more
				}
				batch = append(batch, d)
			default:
				break more
			}
		}
		s.flushAcks(batch)
	}
}

func (s *Subscription) flushAcks(batch []*delivery) {
	idx := map[string]int{}
	var acks []rdb.Ack
	for _, d := range batch {
		i, ok := idx[d.stream]
		if !ok {
			i = len(acks)
			idx[d.stream] = i
			acks = append(acks, rdb.Ack{Stream: d.stream, Group: s.group, Delete: s.t.parts[d.part].IsRetry(d.stream)})
		}
		acks[i].IDs = append(acks[i].IDs, d.id)
	}
	for try := 0; try < 3; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.c.db.AckMany(ctx, acks)
		cancel()
		if err == nil || rdb.IsNoGroup(err) {
			return
		}
		s.noteErr("ack", err)
		if !rdb.Transient(err) {
			return
		}
		time.Sleep(time.Duration(50*(try+1)) * time.Millisecond)
	}
	// Unacknowledged entries stay pending and are redelivered: at-least-once.
}

// scheduler promotes due retries into the group's retry streams.
func (s *Subscription) scheduler() {
	defer s.producers.Done()
	const poll = time.Second // also picks up retries scheduled by other consumers
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-s.fetchCtx.Done():
			return
		case due := <-s.retryDue:
			if due.Before(next) {
				next = due
				timer.Reset(time.Until(next))
			}
			continue
		case <-timer.C:
		}
		now := time.Now()
		_, nextMS, err := s.c.db.Promote(s.fetchCtx, s.t.parts, s.group, now.UnixMilli())
		next = now.Add(poll)
		if err != nil {
			if s.fetchCtx.Err() != nil {
				return
			}
			s.noteErr("promote retries", err)
		} else if nextMS >= 0 {
			if at := time.UnixMilli(nextMS); at.Before(next) {
				next = at
			}
		}
		timer.Reset(time.Until(next))
	}
}

// janitor keeps the entries of running handlers alive and reclaims entries
// of consumers that went silent for longer than the visibility timeout.
func (s *Subscription) janitor() {
	defer s.producers.Done()
	tick := s.o.visibility / 3
	t := time.NewTicker(tick)
	defer t.Stop()
	lastForget := time.Now()
	for {
		select {
		case <-s.fetchCtx.Done():
			return
		case <-t.C:
		}
		s.keepAlive(tick)
		s.reclaim()
		if time.Since(lastForget) >= forgetEvery {
			s.forgetIdleConsumers()
			lastForget = time.Now()
		}
	}
}

// Consumers that hold nothing and have not read for idleConsumerAfter are
// removed from the group (every process that subscribes under a generated
// name adds one), checked every forgetEvery by each subscription.
var (
	idleConsumerAfter = time.Hour
	forgetEvery       = 5 * time.Minute
)

func (s *Subscription) forgetIdleConsumers() {
	ctx, cancel := context.WithTimeout(s.fetchCtx, 10*time.Second)
	defer cancel()
	for _, pk := range s.t.parts {
		for _, stream := range []string{pk.Stream, pk.Retry(s.group)} {
			n, err := s.c.db.ForgetIdleConsumers(ctx, stream, s.group, s.o.consumer, idleConsumerAfter.Milliseconds())
			if err != nil {
				if ctx.Err() == nil && !rdb.IsNoGroup(err) {
					s.noteErr("forget idle consumers", err)
				}
				continue
			}
			if n > 0 {
				s.c.log.Info("removed idle consumers that held nothing", "stream", stream, "group", s.group, "count", n)
			}
		}
	}
}

func (s *Subscription) keepAlive(age time.Duration) {
	now := time.Now()
	byStream := map[string][]string{}
	s.mu.Lock()
	for d := range s.inflight {
		if now.Sub(d.touched) >= age {
			byStream[d.stream] = append(byStream[d.stream], d.id)
			d.touched = now
		}
	}
	s.mu.Unlock()
	for stream, ids := range byStream {
		if err := s.c.db.Touch(s.fetchCtx, stream, s.group, s.o.consumer, ids); err != nil && s.fetchCtx.Err() == nil {
			s.noteErr("keep-alive", err)
		}
	}
}

func (s *Subscription) reclaim() {
	for p, pk := range s.t.parts {
		for _, stream := range []string{pk.Stream, pk.Retry(s.group)} {
			start := "0-0"
			for s.fetchCtx.Err() == nil {
				// Claim first, then wait for in-flight slots for what was
				// claimed: readers may hold every slot while they block.
				es, next, deleted, err := s.c.db.AutoClaim(s.fetchCtx, stream, s.group, s.o.consumer,
					s.o.visibility.Milliseconds(), start, int64(s.o.readBatch))
				if err != nil {
					if s.fetchCtx.Err() == nil && !rdb.IsNoGroup(err) {
						s.noteErr("reclaim", err)
					}
					break
				}
				if deleted > 0 {
					s.stats.trimmed.Add(int64(deleted))
					s.c.log.Warn("pending entries were trimmed before they were handled; dropped", "stream", stream, "count", deleted)
				}
				if len(es) > 0 {
					s.stats.reclaimed.Add(int64(len(es)))
					s.c.log.Info("reclaimed entries of a silent consumer", "stream", stream, "count", len(es))
				}
				s.dispatchAll(p, es, 0)
				if next == "0-0" || next == "" {
					break
				}
				start = next
			}
		}
	}
}

func (s *Subscription) noteErr(op string, err error) {
	s.stats.errors.Add(1)
	s.c.log.Warn("subscription: redis error", "op", op, "topic", s.t.name, "group", s.group, "err", err)
}

// backoff is a capped exponential wait with jitter for reconnect loops.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 50 * time.Millisecond} }

func (b *backoff) reset() { b.d = 50 * time.Millisecond }

func (b *backoff) wait(ctx context.Context) {
	d := b.d/2 + time.Duration(rand.Int64N(int64(b.d/2)+1))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	if b.d < 2*time.Second {
		b.d *= 2
	}
}

func randInt63n(n int64) int64 { return rand.Int64N(n) }

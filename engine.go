package herald

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald/internal/celexpr"
	"github.com/heraldbus/herald/internal/rdb"
)

// engine is the delivery engine behind a Subscription.
//
// Goroutines and their owners (all started and awaited by run):
//   - per partition this consumer reads (every partition when unordered, the
//     leased ones when ordered): one reader, which reads a batch, splits it
//     once by handler worker and hands each worker its slice, and one acker,
//     which sends the acknowledgements of finished batches, pipelined;
//   - Concurrency handler workers (ordered.go), each sequential over the keys
//     hashed to it;
//   - the owner loop (lease.go, ordered only): heartbeat, lease renewals,
//     balancing; or the janitor (unordered only): keep-alive and reclaim;
//   - the retry scheduler (promotes due retries of unordered failures and of
//     other consumers).
//
// Shutdown order (run): readers stop (fetch context), then the workers
// finish (Drain) or skip (Stop) what they were handed and leave parked
// events pending, then each partition's acker flushes, then the leases are
// released (ownership moves at once instead of after the lease time) and
// the consumer leaves the group's live set.
type engine struct {
	c        *Client
	t        *topic
	group    string
	h        Handler
	o        *subOptions
	end      func(error) // ends the subscription with an error (its topic was deleted)
	ordered  bool
	instance string // random per engine: two subscriptions under one name never share a lease
	stats    *subStats

	fetchCtx   context.Context // cancelled: stop reading
	handlerCtx context.Context // cancelled: stop handling (Stop)

	workers []*hworker
	budget  budget
	epoch   time.Time // monotonic base of validUntil

	mu    sync.Mutex
	parts []*pstate // the run of each partition this consumer reads, nil when not read
	runs  sync.WaitGroup
	side  sync.WaitGroup // owner loop or janitor, scheduler
	kick  chan struct{}  // wakes the owner loop (a partition run ended)
}

func newEngine(c *Client, t *topic, group string, h Handler, o *subOptions, stats *subStats, fetchCtx, handlerCtx context.Context) *engine {
	e := &engine{c: c, t: t, group: group, h: h, o: o, ordered: !o.unordered, instance: newID()[20:], stats: stats,
		fetchCtx: fetchCtx, handlerCtx: handlerCtx, epoch: time.Now(), parts: make([]*pstate, len(t.parts)),
		kick: make(chan struct{}, 1)}
	e.budget.free = o.maxInFlight
	e.workers = make([]*hworker, o.concurrency)
	for i := range e.workers {
		e.workers[i] = &hworker{e: e, idx: i, in: make(chan []*dlv, o.maxInFlight+1)}
	}
	return e
}

// now is the engine's monotonic clock in nanoseconds.
func (e *engine) now() int64 { return int64(time.Since(e.epoch)) }

// run starts the engine and returns when it has stopped (after fetchCtx is
// cancelled and everything read was handled or skipped).
func (e *engine) run() {
	var wg sync.WaitGroup
	for _, w := range e.workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run() }()
	}
	e.side.Add(1)
	go e.scheduler()
	if e.ordered {
		e.side.Add(1)
		go e.ownerLoop()
	} else {
		for p := range e.t.parts {
			e.startPart(p, rdb.Lease{}, math.MaxInt64)
		}
		e.side.Add(1)
		go e.janitor()
	}
	<-e.fetchCtx.Done()
	// Readers first: nothing new reaches the workers after this.
	e.mu.Lock()
	parts := append([]*pstate(nil), e.parts...)
	e.mu.Unlock()
	for _, p := range parts {
		if p != nil {
			<-p.readerDone
		}
	}
	e.side.Wait() // the owner loop releases its leases only after the runs ended
	for _, w := range e.workers {
		close(w.in)
	}
	wg.Wait()
	e.runs.Wait()
	if !e.ordered {
		e.handBack()
	}
}

// handBack gives what this consumer still holds (read, not handled) back to
// the group when an unordered subscription stops: other consumers read it
// at once instead of after the visibility timeout. (An ordered
// subscription's next owner of a partition claims its pending entries.)
func (e *engine) handBack() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, pk := range e.t.parts {
		if _, err := e.c.db.ReleaseAllToGroup(ctx, pk, e.group, e.o.consumer); err != nil {
			e.noteErr("hand back on stop", err)
		}
	}
}

// startPart starts reading partition p (under lease l when ordered).
func (e *engine) startPart(p int, l rdb.Lease, validUntil int64) *pstate {
	// The acks channel is sized for a full acker round trip, not for every
	// event in flight (4,097 requests were 388 KiB per partition: 99 MiB of
	// heap for a subscription of 256 partitions); a finishing worker waits
	// while the acker, which waits on nothing but Redis, catches up.
	ps := &pstate{e: e, idx: p, pk: e.t.parts[p], retryKey: e.t.parts[p].Retry(e.group), lease: l, acks: make(chan ackReq, min(e.o.maxInFlight, ackerBatch)+1),
		quit: make(chan struct{}), readerDone: make(chan struct{}), finished: make(chan struct{}),
		lastMain: "0-0", lastRetry: "0-0", out: map[*rbatch]struct{}{}}
	ps.validUntil.Store(validUntil)
	ps.ctx, ps.cancel = context.WithCancel(e.fetchCtx)
	e.mu.Lock()
	e.parts[p] = ps
	e.mu.Unlock()
	e.runs.Add(2)
	go func() { defer e.runs.Done(); ps.read() }()
	go func() { defer e.runs.Done(); ps.acker() }()
	go func() {
		// The run ends when its reader stopped and every event it read is
		// finished and acknowledged (or left pending).
		<-ps.readerDone
		ps.waitIdle()
		close(ps.quit)
		<-ps.ackerDone()
		close(ps.finished)
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}()
	return ps
}

// call runs the handler on worker w, turning a panic into an error. The
// handler's start time is the worker's clock (the end of its previous call,
// or the time it took up its current slice); the end is read once and
// becomes the next start: one clock read per event.
func (e *engine) call(m *Message, w *hworker) (err error) {
	ctx, t0 := e.handlerCtx, w.clk
	if e.c.tracing.on() { // tracing.go
		var span trace.Span
		ctx, span = e.c.tracing.startProcess(ctx, e.t.name, e.group, m)
		defer func() { endProcess(span, err) }()
	}
	defer func() { w.clk = e.c.metrics.handled(w.counters(), m, t0, err) }() // metrics.go
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v\n%s", r, debug.Stack())
		}
	}()
	return e.h.Handle(ctx, m)
}

func (e *engine) matches(m *Message) bool {
	ok, _ := e.o.filterPrg.Match(celexpr.NewActivation(&celexpr.Vars{ID: m.ID, Type: m.Type, Source: m.Source,
		Subject: m.Subject, Key: m.Key, ContentType: m.ContentType, Headers: m.Headers, Time: m.Time, Data: m.Data}))
	return ok
}

func (e *engine) noteErr(op string, err error) {
	e.stats.errors.Add(1)
	e.c.log.Warn("subscription: redis error", "op", op, "topic", e.t.name, "group", e.group, "err", err)
}

// deadLetter moves an event to the partition's dead-letter stream (the
// script acknowledges it) and forgets its attempt count. false: Redis did
// not take it (the entry stays pending).
func (e *engine) deadLetter(d *dlv, herr error) bool {
	f := rdb.Failure{Keys: d.b.p.pk, Source: d.stream, Group: e.group, ID: d.id, NextAttempt: d.msg.Attempt + 1,
		Err: herr.Error(), Origin: d.msg.Position, NowMS: time.Now().UnixMilli(), DLQMaxLen: 100000}
	res, ok := e.failScript(f)
	if !ok {
		return false
	}
	switch res {
	case "dead":
		e.stats.dead.Add(1)
		e.c.log.Warn("event dead-lettered", "topic", e.t.name, "group", e.group, "position", d.msg.Position,
			"attempts", d.msg.Attempt, "err", herr)
	case "gone":
		e.stats.trimmed.Add(1)
	}
	if d.prior > 0 || d.msg.Attempt > 1 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := e.c.db.ClearAttempts(ctx, d.b.p.pk, e.group, d.id); err != nil {
			e.noteErr("forget attempts", err)
		}
		cancel()
	}
	return true
}

// failUnordered records a handler error of an unordered subscription: the
// script acknowledges the entry and schedules a retry (or dead-letters it).
func (e *engine) failUnordered(d *dlv, herr error) {
	now := time.Now()
	f := rdb.Failure{Keys: d.b.p.pk, Source: d.stream, Group: e.group, ID: d.id, NextAttempt: d.msg.Attempt + 1,
		Err: herr.Error(), Origin: d.msg.Position, NowMS: now.UnixMilli(), DLQMaxLen: 100000}
	if IsPermanent(herr) || d.msg.Attempt >= e.o.maxAttempts {
		e.deadLetter(d, herr) // unordered: left pending when it fails, reclaimed later
		return
	}
	f.DueMS = now.Add(e.o.retryDelay(d.msg.Attempt)).UnixMilli()
	res, ok := e.failScript(f)
	if !ok {
		return
	}
	switch res {
	case "scheduled":
		e.stats.retried.Add(1)
	case "gone":
		e.stats.trimmed.Add(1)
	}
}

func (e *engine) failScript(f rdb.Failure) (string, bool) {
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := e.c.db.Fail(ctx, f)
		cancel()
		if err == nil {
			return res, true
		}
		e.noteErr("record failure", err)
		if !rdb.Transient(err) || try >= 2 {
			return "", false // the entry stays pending and is taken over later
		}
		time.Sleep(time.Duration(50*(try+1)) * time.Millisecond)
	}
}

// releaseToGroup hands an event of an unordered subscription back to the
// group at once (ErrRelease): any consumer reads it from the retry stream.
func (e *engine) releaseToGroup(d *dlv) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.c.db.ReleaseToGroup(ctx, d.b.p.pk, d.stream, e.group, d.id, d.msg.Position); err != nil {
		e.noteErr("release", err)
		return false
	}
	return true
}

// scheduler promotes due retries into the group's retry streams.
func (e *engine) scheduler() {
	defer e.side.Done()
	const poll = time.Second // picks up retries scheduled by other consumers too
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-e.fetchCtx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		next := now.Add(poll)
		_, nextMS, err := e.c.db.Promote(e.fetchCtx, e.t.parts, e.group, now.UnixMilli())
		if err != nil {
			if e.fetchCtx.Err() != nil {
				return
			}
			if !rdb.IsNoGroup(err) {
				e.noteErr("promote retries", err)
			}
		} else if nextMS >= 0 {
			if at := time.UnixMilli(nextMS); at.Before(next) {
				next = at
			}
		}
		timer.Reset(time.Until(next))
	}
}

// budget bounds the events read and not yet finished (MaxInFlight); it is
// taken and given back per batch, never per event.
type budget struct {
	mu   sync.Mutex
	free int
	wait chan struct{}
}

// take reserves up to want slots, waiting for at least one; 0 when ctx ends.
func (b *budget) take(ctx context.Context, want int) int {
	for {
		b.mu.Lock()
		if b.free > 0 {
			n := min(want, b.free)
			b.free -= n
			b.mu.Unlock()
			return n
		}
		if b.wait == nil {
			b.wait = make(chan struct{})
		}
		w := b.wait
		b.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return 0
		}
	}
}

// force takes n slots even when that leaves fewer than none.
// tryTake takes up to want slots without waiting (0 when none is free).
func (b *budget) tryTake(want int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(want, max(b.free, 0))
	b.free -= n
	return n
}

func (b *budget) force(n int) {
	b.mu.Lock()
	b.free -= n
	b.mu.Unlock()
}

func (b *budget) give(n int) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	if b.wait != nil {
		close(b.wait)
		b.wait = nil
	}
	b.mu.Unlock()
}

// idAfter reports whether stream position a comes after b.
func idAfter(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	return am > bm || (am == bm && as > bs)
}

// nextID is the smallest stream position after id.
func nextID(id string) string {
	ms, seq := splitID(id)
	return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq+1, 10)
}

func splitID(id string) (uint64, uint64) {
	ms, seq, _ := strings.Cut(id, "-")
	m, _ := strconv.ParseUint(ms, 10, 64)
	s, _ := strconv.ParseUint(seq, 10, 64)
	return m, s
}

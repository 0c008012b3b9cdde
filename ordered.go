package herald

import (
	"container/heap"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// hworker is one handler goroutine. It takes slices of read batches and
// handles them one event at a time. In an ordered subscription every event
// of one key (of one partition run) comes to the same worker, so handling
// them in arrival order is handling them in stream order. A failing event
// stays pending in Redis and is retried here, in place, after its backoff;
// later events of its key are parked behind it (other keys flow); a dead
// letter or a success releases the key.
type hworker struct {
	e       *engine
	idx     int // the worker's place in engine.workers: picks its counter shard
	in      chan []*dlv
	blocked map[bkey]*kqueue // keys held back by a failing event (ordered)
	due     kheap            // queues whose head waits for its retry time
	dropped map[bkey]bool    // keys let go of while stopping: later events skip too

	// Counted here and added to the subscription's stats once per slice:
	// a shared atomic per event is a contended cache line on many cores.
	handled, filtered int64

	shard *handlerShard // the group's counter shard this worker adds to
	clk   time.Time     // when the next handler call starts (engine.call)

	// mu is held while the worker's events are handled: by its goroutine,
	// or by a reader that runs a small slice inline (give).
	mu sync.Mutex
	// queued counts slices sent on in and not yet handled.
	queued atomic.Int64
	// cheap is set while the last slice took at most the subscription's
	// inlineMax (defaultInlineMax) per event: only then may a reader run a
	// slice inline. It starts unset, so a handler is first seen on the
	// worker's goroutine.
	cheap atomic.Bool
}

// A reader whose read returned at most inlineBatch events (it is caught up
// with the stream, so latency matters more than spreading the work) runs
// the slice of an idle worker whose handler was seen to take at most
// defaultInlineMax per event itself, instead of waking the worker's goroutine.
// The hand-off it saves is a goroutine wake-up: 14-21 µs of
// publish-to-handler latency at p50 on a busy 2-core machine. Reads of a
// backlog (bigger batches) always go to the workers, so throughput keeps
// every handler goroutine busy. A handler that turns slow holds its
// partition's reader for that one call, and then goes back to its
// goroutine.
const (
	inlineBatch      = 8
	defaultInlineMax = 20 * time.Microsecond
)

// counters returns the worker's shard of its group's handler counters.
func (w *hworker) counters() *handlerShard {
	if w.shard == nil {
		gc := w.e.c.metrics.group(w.e)
		w.shard = &gc.shards[w.idx%handlerShards]
	}
	return w.shard
}

// flush adds the worker's counts to the subscription's stats.
func (w *hworker) flush() {
	if w.handled > 0 {
		w.e.stats.handled.Add(w.handled)
		w.handled = 0
	}
	if w.filtered > 0 {
		w.e.stats.filtered.Add(w.filtered)
		w.filtered = 0
	}
}

// bkey names a key within one partition run. Keyless events that fail get a
// queue of their own (key "", their position).
type bkey struct {
	p   *pstate
	key string
	id  string
}

// kqueue is a blocked key: items[0] failed and waits for its retry; the
// others arrived after it.
type kqueue struct {
	k     bkey
	items []*dlv
	at    time.Time
	index int // in the heap, -1 when not there
}

func keyOf(d *dlv) bkey {
	if d.msg.Key == "" {
		return bkey{p: d.b.p, id: d.id}
	}
	return bkey{p: d.b.p, key: d.msg.Key}
}

func (w *hworker) run() {
	e := w.e
	w.blocked = map[bkey]*kqueue{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var tc <-chan time.Time
		if len(w.blocked) > 0 {
			// Wake for the next retry, and at least every 100ms to let go
			// of keys whose partition run ended.
			wait := 100 * time.Millisecond
			if len(w.due) > 0 && e.fetchCtx.Err() == nil {
				wait = min(wait, time.Until(w.due[0].at))
			}
			timer.Reset(max(wait, 0))
			tc = timer.C
		}
		select {
		case ch, ok := <-w.in:
			timer.Stop()
			w.mu.Lock()
			if !ok {
				w.purge(true)
				w.mu.Unlock()
				return
			}
			w.handleSlice(ch, false)
			w.queued.Add(-1)
			w.mu.Unlock()
		case <-tc:
			w.mu.Lock()
			if e.fetchCtx.Err() != nil {
				w.purge(true) // stopping: no more retries; parked events stay pending
				w.mu.Unlock()
				continue
			}
			w.purge(false)
			now := time.Now()
			w.clk = now
			for len(w.due) > 0 && !w.due[0].at.After(now) {
				q := heap.Pop(&w.due).(*kqueue)
				w.resume(q)
			}
			w.flush()
			w.mu.Unlock()
		}
	}
}

// handleSlice handles a slice of one read batch; w.mu is held. onReader:
// the calling goroutine is the partition's reader (give).
func (w *hworker) handleSlice(ch []*dlv, onReader bool) {
	w.clk = time.Now()
	t0 := w.clk
	for _, d := range ch {
		w.deliver(d)
	}
	w.flush()
	w.cheap.Store(w.clk.Sub(t0) <= time.Duration(len(ch))*w.e.o.inlineMax)
	ch[0].b.settled(len(ch), onReader) // a slice holds events of one batch
}

// give hands w a slice of a read batch of total events (onReader: from the
// partition's reader, which then sends the acks of what it finishes). A small batch
// (inlineBatch) for an idle worker (nothing queued or being handled, so no
// earlier event of the slice's keys waits anywhere) whose handler is cheap
// is handled by the calling reader itself, under w.mu; everything else is
// queued for the worker's goroutine. Either way a worker's events are
// handled one at a time in the order they were given.
func (w *hworker) give(ch []*dlv, total int, onReader bool) {
	if total <= inlineBatch && w.cheap.Load() && w.queued.Load() == 0 && w.mu.TryLock() {
		if w.queued.Load() == 0 { // again under the lock
			w.e.stats.inline.Add(1)
			w.handleSlice(ch, onReader)
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
	w.queued.Add(1)
	w.in <- ch
}

// deliver handles d unless its run ended or its key is blocked.
func (w *hworker) deliver(d *dlv) {
	if w.e.handlerCtx.Err() != nil || !d.b.p.aliveAt(w.clk) {
		if w.e.handlerCtx.Err() == nil {
			d.b.p.fence()
		}
		d.finish(stSkip) // left pending: the partition's next run delivers it
		return
	}
	if w.dropped != nil && w.dropped[keyOf(d)] {
		d.finish(stSkip) // an earlier event of its key was left pending
		return
	}
	if len(w.blocked) > 0 {
		if q := w.blocked[keyOf(d)]; q != nil {
			q.items = append(q.items, d)
			d.finish(stDeferred)
			return
		}
	}
	w.handle(d, false)
}

// resume retries the head of a blocked key, then hands on its queue.
func (w *hworker) resume(q *kqueue) {
	for len(q.items) > 0 {
		d := q.items[0]
		if w.e.handlerCtx.Err() != nil || !d.b.p.aliveAt(w.clk) {
			if w.e.handlerCtx.Err() == nil {
				d.b.p.fence()
			}
			w.drop(q)
			return
		}
		if w.handle(d, true) {
			return // failed again: parked
		}
		q.items[0] = nil
		q.items = q.items[1:]
	}
	delete(w.blocked, q.k)
}

// handle calls the handler for d and settles it. It returns true when d was
// parked for a retry (ordered).
func (w *hworker) handle(d *dlv, deferred bool) bool {
	e := w.e
	settle := func(st uint32) {
		if deferred {
			d.finishDeferred(st)
		} else {
			d.finish(st)
		}
	}
	if e.o.filterPrg != nil && !e.matches(&d.msg) {
		w.filtered++
		settle(stAck)
		w.clk = time.Now() // the filter's time is not the next handler's
		return false
	}
	err := e.call(&d.msg, w)
	if err != nil {
		// The failure paths below may wait on Redis: the next call starts
		// when they are done.
		defer func() { w.clk = time.Now() }()
	}
	switch {
	case err == nil:
		w.handled++
		settle(stAck)
		return false
	case e.handlerCtx.Err() != nil:
		settle(stSkip) // failed while stopping: handed back, not an attempt
		return false
	case errors.Is(err, ErrRelease):
		if !e.ordered {
			e.releaseToGroup(d)
			settle(stSkip)
			return false
		}
		// Ordered: its key must wait for it, so it stays here and is
		// offered again after the first backoff, as the same attempt.
		w.park(d, deferred, e.o.backoff)
		return true
	}
	e.stats.failed.Add(1)
	if !e.ordered {
		e.failUnordered(d, err)
		settle(stSkip)
		return false
	}
	if IsPermanent(err) || d.msg.Attempt >= e.o.maxAttempts {
		if e.deadLetter(d, err) { // releases the key
			settle(stSkip)
			return false
		}
		// Redis did not take the dead letter: the event keeps its key
		// blocked and is offered again after the backoff (the handler runs
		// again), so that no later event of its key goes before it.
		w.park(d, deferred, e.o.backoff)
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, aerr := e.c.db.AddAttempt(ctx, d.b.p.pk, e.group, d.id); aerr != nil {
		e.noteErr("count attempt", aerr) // the count is kept here until a crash
	}
	cancel()
	e.stats.retried.Add(1)
	delay := e.o.retryDelay(d.msg.Attempt)
	d.msg.Attempt++
	w.park(d, deferred, delay)
	return true
}

// park holds d (and later events of its key) until its retry time.
func (w *hworker) park(d *dlv, deferred bool, delay time.Duration) {
	if !deferred {
		d.finish(stDeferred)
	}
	k := keyOf(d)
	q := w.blocked[k]
	if q == nil {
		q = &kqueue{k: k, items: []*dlv{d}, index: -1}
		w.blocked[k] = q
	}
	q.at = time.Now().Add(delay)
	heap.Push(&w.due, q)
}

// drop lets go of a blocked key: its events stay pending in Redis.
func (w *hworker) drop(q *kqueue) {
	if w.e.fetchCtx.Err() != nil && q.k.p.alive() {
		if w.dropped == nil {
			w.dropped = map[bkey]bool{}
		}
		w.dropped[q.k] = true
	}
	for _, d := range q.items {
		d.finishDeferred(stSkip)
	}
	q.items = nil
	if q.index >= 0 {
		heap.Remove(&w.due, q.index)
	}
	delete(w.blocked, q.k)
}

// purge drops the blocked keys whose run ended (all when every is set).
func (w *hworker) purge(every bool) {
	for _, q := range w.blocked {
		if every || !q.k.p.alive() {
			if !every {
				q.k.p.fence()
			}
			w.drop(q)
		}
	}
}

// kheap orders blocked keys by retry time.
type kheap []*kqueue

func (h kheap) Len() int           { return len(h) }
func (h kheap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h kheap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *kheap) Push(x any) {
	q := x.(*kqueue)
	q.index = len(*h)
	*h = append(*h, q)
}
func (h *kheap) Pop() any {
	old := *h
	q := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	q.index = -1
	return q
}

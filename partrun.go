package herald

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/rdb"
)

// pstate is one run of a partition: from the moment this consumer starts
// reading it (the lease taken, when ordered) until it stopped and every event
// it read is finished.
type pstate struct {
	e        *engine
	idx      int
	pk       rdb.PartKeys
	retryKey string // the group's retry stream on the partition
	lease    rdb.Lease
	ctx      context.Context // the reader's; cancelled on release, loss or stop
	cancel   context.CancelFunc

	validUntil atomic.Int64  // engine clock: handling stops here unless the lease is renewed
	closed     atomic.Bool   // released, lost or fenced: its events are skipped, left pending
	lost       atomic.Bool   // the lease is someone else's (or gone): no more renewals
	inflight   atomic.Int64  // events read, not yet finished and acknowledged
	deferred   atomic.Int64  // of which parked behind a failing event of their key
	rr         atomic.Uint32 // spreads keyless events over the workers

	acks       chan ackReq
	quit       chan struct{} // closed when the run is idle: the acker exits
	ackDone    chan struct{}
	readerDone chan struct{}
	finished   chan struct{} // closed when the run is over

	// readerAcks are the acks of batches finished on the reader's own
	// goroutine (slices it handled inline, entries it settled while
	// dispatching): the reader sends them with its next read instead of
	// waking the acker. Only the reader touches them.
	readerAcks []ackReq

	mu        sync.Mutex
	lastMain  string // highest position handed to the workers, per stream
	lastRetry string
	out       map[*rbatch]struct{} // unfinished batches (unordered: keep-alive)
}

// fence ends a run that reached its fence (lease - margin since its last
// renewal was sent) with events still to handle: they are skipped, left
// pending. A renewal that comes back after that must not revive the run,
// or it would handle later events of those keys first; the next run (this
// consumer's or another's) claims what is pending, in stream order. The
// lease is not released: it runs out (renewed only while a handler of this
// run is still running).
func (p *pstate) fence() {
	if p.closed.CompareAndSwap(false, true) {
		p.e.c.log.Warn("partition lease not renewed in time; stopped handling it, its events stay pending for the next run",
			"topic", p.e.t.name, "group", p.e.group, "partition", p.idx)
		p.cancel()
	}
}

// alive reports whether the run may still handle its events.
func (p *pstate) alive() bool { return !p.closed.Load() && p.e.now() < p.validUntil.Load() }

// aliveAt is alive at clock t, a time read on the calling goroutine no
// earlier than the last wait (a worker's clock, which it reads once per
// event anyway: a clock read per event was 8% of the consumer's CPU).
func (p *pstate) aliveAt(t time.Time) bool {
	return !p.closed.Load() && int64(t.Sub(p.e.epoch)) < p.validUntil.Load()
}

// read is the run's reader: first what is pending (ordered: every entry of
// the group on the partition, whoever held it, in stream order; unordered:
// this consumer's own), then new entries.
func (p *pstate) read() {
	defer close(p.readerDone)
	defer p.flushReaderAcks() // before readerDone: the acker is still there
	e := p.e
	bo := newBackoff()
	// Unordered: this consumer's own pending entries first (lastMain and
	// lastRetry start at 0-0). Ordered: the claim below.
	reread := !e.ordered // also set when a read failed: its reply may have been lost
	if e.ordered {
		for !p.claimAll() { // new entries must wait until the pending ones are claimed
			if p.ctx.Err() != nil {
				return
			}
			p.flushReaderAcks()
			bo.wait(p.ctx)
		}
		bo.reset()
	}
	// The reader's own connection (rdb.ReadConn), replaced after a failed
	// read; closed when the run's context ends, which interrupts a read in
	// flight.
	var rc *rdb.ReadConn
	unwatch := func() bool { return false }
	dropConn := func() {
		if rc != nil {
			unwatch()
			rc.Close()
			rc = nil
		}
	}
	defer dropConn()
	for p.ctx.Err() == nil {
		if reread {
			p.flushReaderAcks()
			// Redis may have delivered the entries of the failed read to
			// this consumer: read them again (positions after the last
			// handed over) before anything new.
			p.mu.Lock()
			m, r := p.lastMain, p.lastRetry
			p.mu.Unlock()
			if !p.readOwn(m, r) {
				p.flushReaderAcks()
				bo.wait(p.ctx)
				continue
			}
			reread = false
		}
		if p.deferred.Load() >= int64(max(16, e.o.maxInFlight/4)) {
			// Failing keys hold many events back: stop reading this
			// partition until some are released, rather than let them take
			// the in-flight slots of every partition.
			p.flushReaderAcks()
			select {
			case <-p.ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		n := p.takeBudget()
		if n == 0 {
			return
		}
		block := e.o.block
		if e.ordered {
			// A read must not outlive the lease: it would deliver entries
			// after another consumer took the partition over.
			left := time.Duration(p.validUntil.Load()-e.now()) - e.o.leaseMargin()
			if left < 10*time.Millisecond {
				e.budget.give(n)
				p.flushReaderAcks()
				select {
				case <-p.ctx.Done():
				case <-time.After(e.o.lease / 20):
				}
				continue
			}
			block = min(block, left)
		}
		acks, held := p.takeReaderAcks()
		if rc == nil {
			rc = e.c.db.NewReadConn(p.pk.Stream)
			unwatch = context.AfterFunc(p.ctx, rc.Close)
		}
		es, others, ackErr, err := e.c.db.ReadBatch(p.ctx, rc, p.pk, e.group, e.o.consumer, int64(n), max(1, block.Milliseconds()), e.ordered, acks)
		if len(held) > 0 {
			if err != nil || ackErr != nil {
				// Not known to have run: the acker sends them (again).
				for _, r := range held {
					p.acks <- r
				}
			} else {
				k := 0
				for _, r := range held {
					k += r.n
				}
				p.inflight.Add(-int64(k))
				e.budget.give(k)
			}
		}
		if err != nil {
			e.budget.give(n)
			dropConn() // a reply may still be on its way on it
			if p.ctx.Err() != nil {
				return
			}
			e.noteErr("read", err)
			if rdb.IsNoGroup(err) {
				e.recoverGroup(p.ctx, p.pk)
				continue
			}
			bo.wait(p.ctx)
			reread = true
			continue
		}
		bo.reset()
		var prior []int64
		if others {
			es, prior = p.withStrays(es)
		}
		p.dispatch(es, n, prior, true)
	}
}

// withStrays adds to a read batch of an owned partition the entries that
// other consumers hold and this run has not handed over yet: a former
// owner's read that reached Redis after its lease ran out (a process paused
// before it sent the read, or Redis stalled with the read queued) took
// entries that come before some of es. They are claimed and handed over
// with es in stream order, before anything later of their keys. prior holds
// the attempt counts of the merged batch (nil when there is nothing to add).
func (p *pstate) withStrays(es []rdb.Entry) ([]rdb.Entry, []int64) {
	e := p.e
	p.mu.Lock()
	start := [2]string{nextID(p.lastMain), nextID(p.lastRetry)}
	p.mu.Unlock()
	strays, err := e.c.db.Strays(p.ctx, p.pk, e.group, e.o.consumer, start)
	if err != nil {
		if p.ctx.Err() == nil {
			e.noteErr("claim entries of a former owner", err) // the next read checks again
		}
		return es, nil
	}
	if len(strays) == 0 {
		return es, nil
	}
	e.stats.reclaimed.Add(int64(len(strays)))
	e.c.log.Warn("claimed entries that a former owner read after its lease ran out", "topic", e.t.name, "group", e.group,
		"partition", p.idx, "count", len(strays))
	ids := make([]string, len(strays))
	for i := range strays {
		ids[i] = strays[i].ID
	}
	sp, err := e.c.db.AttemptsOf(p.ctx, p.pk, e.group, ids)
	if err != nil {
		e.noteErr("read attempt counts", err)
		sp = make([]int64, len(strays))
	}
	type item struct {
		en    rdb.Entry
		prior int64
	}
	all := make([]item, 0, len(strays)+len(es))
	for i := range strays {
		all = append(all, item{strays[i], sp[i]})
	}
	for i := range es {
		all = append(all, item{en: es[i]})
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := &all[i].en, &all[j].en
		if a.Stream != b.Stream {
			return a.Stream < b.Stream
		}
		return idAfter(b.ID, a.ID)
	})
	merged, prior := make([]rdb.Entry, len(all)), make([]int64, len(all))
	for i := range all {
		merged[i], prior[i] = all[i].en, all[i].prior
	}
	return merged, prior
}

// share is the most events one read reserves: a reader blocked in a read
// must not hold every in-flight slot.
func (p *pstate) share() int {
	e := p.e
	return max(1, min(e.o.readBatch, e.o.maxInFlight/len(e.t.parts)))
}

// takeBudget takes in-flight slots for one read (p.share()), waiting while
// none is free; 0 when the run ended. Before it waits, the acks the reader
// holds go to the acker: the slots they free may be the ones it waits for
// (the small batches the reader handles itself hold their acks for its
// next read).
func (p *pstate) takeBudget() int {
	if n := p.e.budget.tryTake(p.share()); n > 0 {
		return n
	}
	p.flushReaderAcks()
	return p.e.budget.take(p.ctx, p.share())
}

// readOwn re-reads this consumer's pending entries after the given
// positions; false when a read failed.
func (p *pstate) readOwn(afterMain, afterRetry string) bool {
	e := p.e
	for p.ctx.Err() == nil {
		n := p.takeBudget()
		if n == 0 {
			return true
		}
		es, err := e.c.db.ReadOwnAfter(p.ctx, p.pk, e.group, e.o.consumer, int64(n), afterMain, afterRetry)
		if err != nil {
			e.budget.give(n)
			if p.ctx.Err() != nil || rdb.IsNoGroup(err) {
				return true
			}
			e.noteErr("read own pending", err)
			return false
		}
		if len(es) == 0 {
			e.budget.give(n)
			return true
		}
		for _, en := range es {
			if en.Stream == p.retryKey {
				afterRetry = en.ID
			} else {
				afterMain = en.ID
			}
		}
		p.dispatch(es, n, nil, true)
	}
	return true
}

// claimAll takes over every pending entry of the group on the partition (the
// lease guarantees that their holders stopped) and hands them to the workers
// in stream order, before any new entry is read. It returns false after a
// Redis error; the caller tries again, from after what was handed over.
func (p *pstate) claimAll() bool {
	e := p.e
	for i, stream := range []string{p.pk.Stream, p.pk.Retry(e.group)} {
		start := "0-0"
		p.mu.Lock()
		if last := [2]string{p.lastMain, p.lastRetry}[i]; last != "0-0" {
			start = nextID(last) // an earlier attempt handed over up to last
		}
		p.mu.Unlock()
		for p.ctx.Err() == nil {
			n := p.takeBudget()
			if n == 0 {
				return true
			}
			es, next, deleted, err := e.c.db.AutoClaim(p.ctx, stream, e.group, e.o.consumer, 0, start, int64(n))
			if err != nil {
				e.budget.give(n)
				if p.ctx.Err() != nil || rdb.IsNoGroup(err) {
					break
				}
				e.noteErr("claim pending", err)
				return false
			}
			if deleted > 0 {
				// Redis removed them from the pending list in this call: counted once.
				e.stats.trimmed.Add(int64(deleted))
				e.c.log.Warn("pending entries were trimmed before they were handled; dropped", "stream", stream, "count", deleted)
			}
			var prior []int64
			if len(es) > 0 {
				e.stats.reclaimed.Add(int64(len(es)))
				ids := make([]string, len(es))
				for i := range es {
					ids[i] = es[i].ID
				}
				if prior, err = e.c.db.AttemptsOf(p.ctx, p.pk, e.group, ids); err != nil {
					e.noteErr("read attempt counts", err)
					prior = nil
				}
			}
			p.dispatch(es, n, prior, true)
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
	}
	return true
}

// dispatch splits a read batch by handler worker and hands each worker its
// slice. n slots of the budget were reserved; unused ones are given back.
// onReader: the caller is the partition's reader (not the janitor).
func (p *pstate) dispatch(es []rdb.Entry, n int, prior []int64, onReader bool) {
	e := p.e
	if len(es) < n {
		e.budget.give(n - len(es))
	}
	if len(es) == 0 {
		return
	}
	if len(es) > n {
		// A read of two streams returns up to n from each: count the rest.
		e.budget.force(len(es) - n)
	}
	b := &rbatch{p: p, items: make([]dlv, len(es))}
	if !e.ordered {
		b.read = time.Now()
		p.mu.Lock()
		p.out[b] = struct{}{}
		p.mu.Unlock()
	}
	b.left.Store(int32(len(es)))
	p.inflight.Add(int64(len(es)))
	W := len(e.workers)
	chunks := make([][]*dlv, W)
	var settled []*dlv
	rr := p.rr.Add(uint32(len(es)))
	lastMain, lastRetry := "", ""
	for i := range es {
		en := &es[i]
		d := &b.items[i]
		d.b, d.stream, d.id = b, en.Stream, en.ID
		if en.Stream == p.retryKey {
			d.retry = true
			lastRetry = en.ID
		} else {
			lastMain = en.ID
		}
		if en.Pairs == nil { // trimmed while pending: nothing to deliver
			d.state.Store(stTrimmed)
			settled = append(settled, d)
			continue
		}
		ev, meta, err := codec.Decode(en.Pairs, en.ID)
		d.msg = Message{Event: Event(ev), Topic: e.t.name, Group: e.group, Partition: p.idx, Position: en.ID, Attempt: meta.Attempt}
		if meta.Origin != "" {
			d.msg.Position = meta.Origin
		}
		if d.msg.Attempt == 0 {
			d.msg.Attempt = 1
		}
		if prior != nil && i < len(prior) && prior[i] > 0 {
			d.prior = prior[i]
			d.msg.Attempt += int(prior[i])
		}
		if err != nil {
			// Not a Herald event (written by hand?): dead-letter it with the reason.
			e.stats.failed.Add(1)
			e.deadLetter(d, Permanent(err)) // when it fails: left pending (it has no key to hold back)
			d.state.Store(stSkip)
			settled = append(settled, d)
			continue
		}
		var w int
		if e.ordered && d.msg.Key != "" {
			w = int(fnv32(d.msg.Key) % uint32(W))
		} else {
			w = int((rr + uint32(i)) % uint32(W))
		}
		chunks[w] = append(chunks[w], d)
	}
	p.mu.Lock()
	if lastMain != "" && idAfter(lastMain, p.lastMain) {
		p.lastMain = lastMain
	}
	if lastRetry != "" && idAfter(lastRetry, p.lastRetry) {
		p.lastRetry = lastRetry
	}
	p.mu.Unlock()
	for w, ch := range chunks {
		if len(ch) > 0 {
			e.workers[w].give(ch, len(es), onReader)
		}
	}
	for _, d := range settled {
		d.finish(d.state.Load())
	}
	if len(settled) > 0 {
		b.settled(len(settled), onReader)
	}
}

// fnv32 is FNV-1a over s, without allocating.
func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// recoverGroup recreates a group lost with a Redis restart (and the topic's
// metadata if that went too). It starts from the beginning of what is there:
// after a restart without persistence the stream holds only new events.
func (e *engine) recoverGroup(ctx context.Context, pk rdb.PartKeys) {
	// A topic deleted by DeleteTopic (another client's) is not brought
	// back: the subscription ends with ErrTopicNotFound.
	if deleted, err := e.c.db.TopicWasDeleted(ctx, e.t.name); err != nil {
		e.noteErr("check the topic", err)
		return
	} else if deleted {
		e.c.log.Warn("topic was deleted; the subscription ends", "topic", e.t.name, "group", e.group)
		if e.end != nil {
			e.end(fmt.Errorf("%w: %q was deleted", ErrTopicNotFound, e.t.name))
		}
		return
	}
	e.c.restoreTopic(ctx, e.t)
	if err := e.c.db.EnsureGroup(ctx, pk, e.group, "0"); err != nil {
		e.noteErr("recreate group", err)
		return
	}
	e.c.log.Warn("consumer group was missing (Redis restarted without persistence?); recreated from the start of the stream",
		"topic", e.t.name, "group", e.group, "stream", pk.Stream)
}

package herald

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

// The partition writer: every publish call hands its events for one
// partition to that partition's partWriter (submit), which coalesces them
// into batches and sends each batch with its lane's producer sequence
// (lane.go), retrying with the same sequence until the outcome is known
// (appendWithRetry). Where an event goes is decided before, in placement.go.

// pubReq is one caller's events for one partition.
type pubReq struct {
	replicated bool // wait for replicas after the append
	degrade    bool // AllowDegraded: fewer replicas than asked is no error
	async      bool // from PublishAsync: holds a Client.pending slot
	ordered    bool // has keyed events or a chosen partition: lane 0, in order
	fields     [][]string
	dedupe     []string
	// Room for one event, so that a single Publish allocates no slices.
	fields1   [1][]string
	dedupe1   [1]string
	fieldsBuf [4]string // an event's id and data fields (more grow a slice)
	res       rdb.AppendResult
	err       error

	// Settling: settled is set once res and err are final. The channel of
	// Done is made only for callers that ask for one; whichever of settle
	// and doneChan sees the other's step closes it (closed makes it once).
	settled atomic.Bool
	closed  atomic.Bool
	done    atomic.Pointer[chan struct{}]
}

// settle marks r final and wakes whoever waits on its channel.
func (r *pubReq) settle() {
	r.settled.Store(true)
	if ch := r.done.Load(); ch != nil && r.closed.CompareAndSwap(false, true) {
		close(*ch)
	}
}

// doneChan is closed once r is settled.
func (r *pubReq) doneChan() <-chan struct{} {
	if r.settled.Load() {
		return closedChan
	}
	ch := make(chan struct{})
	if !r.done.CompareAndSwap(nil, &ch) {
		return *r.done.Load()
	}
	if r.settled.Load() && r.closed.CompareAndSwap(false, true) {
		close(ch)
	}
	return ch
}

var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// partWriter coalesces the requests for one partition into batches, one in
// flight per lane. Different partitions and lanes flush concurrently; all
// are pipelined on the connection.
type partWriter struct {
	c    *Client
	t    *topic
	p    int
	keys rdb.PartKeys

	mu      sync.Mutex
	ordered []*pubReq    // requests with keys: lane 0, in order
	free    []*pubReq    // keyless requests: any lane
	queued  atomic.Int64 // events in free, for keyless placement (placement.go)
	busy    atomic.Bool  // every lane has a batch in flight, for keyless placement
	lane    [lanes]laneState
	prods   [lanes]string // the lanes' producer ids, made once (under mu)
	idle    int           // lanes without a batch in flight
}

// submit queues r and, when a lane is free, sends batches: inline, from
// the caller's goroutine until r is done (no hand-off at low load; batches
// queued behind it go on in a goroutine of their own), or else from a new
// goroutine until the queue is empty.
func (w *partWriter) submit(r *pubReq, inline bool) {
	w.mu.Lock()
	if r.ordered {
		w.ordered = append(w.ordered, r)
	} else {
		w.free = append(w.free, r)
		w.queued.Add(int64(len(r.fields)))
	}
	b := w.takeLocked()
	w.mu.Unlock()
	switch {
	case b == nil:
	case inline:
		w.c.writers.Add(1)
		w.sendLoop(b, r)
	default:
		w.c.writers.Add(1)
		go w.sendLoop(b, nil)
	}
}

// sendLoop sends b and then whatever is queued, until mine is done (the
// rest is left to a new goroutine) or nothing is left. c.writers counts it.
func (w *partWriter) sendLoop(b *batch, mine *pubReq) {
	defer w.c.writers.Done()
	for b != nil {
		w.flush(b)
		w.mu.Lock()
		w.lane[b.lane].inflight = false
		if w.c.cachedTopic(w.t.name) != w.t {
			// The topic was deleted (or replaced) while this batch was in
			// flight, after closeFences skipped this lane: give its
			// connection back now.
			w.lane[b.lane].fence.Close()
		}
		w.idle++
		w.busy.Store(false)
		w.settleLocked(b.lane, b.seq)
		next := w.takeLocked()
		w.mu.Unlock()
		if next != nil && mine != nil && mine.settled.Load() {
			w.c.writers.Add(1)
			go w.sendLoop(next, nil)
			return
		}
		b = next
	}
}

func (w *partWriter) flush(bt *batch) {
	ls := &w.lane[bt.lane] // its batch fields: this goroutine's alone while bt is in flight
	b := &ls.ab
	*b = rdb.AppendBatch{Keys: w.keys, Producer: bt.producer, Seq: bt.seq, MaxLen: w.t.cfg.MaxLen,
		DedupeMS: w.t.cfg.DedupeWindow.Milliseconds(), StateTTL: stateTTL(w.t.cfg)}
	defer func() {
		clear(ls.abFields) // hold no event once the batch is done
		clear(ls.abDedupes)
		ls.abFields, ls.abDedupes = ls.abFields[:0], ls.abDedupes[:0]
		clear(bt.reqs)
		*b = rdb.AppendBatch{}
	}()
	if w.t.cfg.MaxAge > 0 {
		b.MinID = fmt.Sprintf("%d-0", time.Now().Add(-w.t.cfg.MaxAge).UnixMilli())
	}
	replicated := false
	if len(bt.reqs) == 1 { // one caller's events: no copy (the appends only read them)
		b.DedupeIDs, b.Fields, replicated = bt.reqs[0].dedupe, bt.reqs[0].fields, bt.reqs[0].replicated
	} else {
		for _, r := range bt.reqs {
			ls.abDedupes = append(ls.abDedupes, r.dedupe...)
			ls.abFields = append(ls.abFields, r.fields...)
			replicated = replicated || r.replicated
		}
		b.DedupeIDs, b.Fields = ls.abDedupes, ls.abFields
	}
	// An asynchronous publisher goes on working while its batch is in
	// flight: no lane spins alone meanwhile (internal/rdb/spin.go).
	if slices.ContainsFunc(bt.reqs, func(r *pubReq) bool { return r.async }) {
		defer rdb.HoldSpins()()
	}
	t0 := time.Now()
	res, err := w.appendWithRetry(b, bt.lane, replicated)
	w.c.metrics.appended(w.t.name, t0, &res, err, len(b.Fields)) // metrics.go
	off, async := 0, 0
	for _, r := range bt.reqs {
		if err != nil {
			r.err = err
		} else {
			k := len(r.fields)
			r.res = rdb.AppendResult{Replay: res.Replay, Positions: res.Positions[off : off+k], Dup: res.Dup[off : off+k], Acked: res.Acked}
			off += k
		}
		if r.async {
			async++
		}
		r.settle()
	}
	w.c.pending.give(async) // after settling: a publisher waiting for a slot finds its future settled
}

// appendWithRetry sends the batch until it is confirmed, retrying errors
// whose outcome is unknown with the same sequence number: if an earlier send
// landed, the script answers with the positions of that first append; a
// plain append (rdb.AppendPlain) first fences the lost attempt's connection
// and finds what of the batch landed in the partition's tail.
func (w *partWriter) appendWithRetry(b *rdb.AppendBatch, lane int, replicated bool) (rdb.AppendResult, error) {
	// Big batches of plain events go as a WATCH-guarded transaction, the
	// others through the script; one batch keeps its way over its retries
	// (each answers a repeated sequence from its own records).
	way := w.c.cfg.appendWay
	w.mu.Lock()
	unsure := w.lane[lane].scriptUnsure
	w.mu.Unlock()
	if way == wayPlain && (!b.PlainEligible() || !w.c.db.PlainSupported() || unsure) {
		// (unsure: a script batch of this lane was given up with its
		// outcome unknown. It may still be queued on the shared connection;
		// only a script call records the lane's sequence, which makes it
		// stale when it comes, so this batch goes through the script too.)
		way = wayScript
	}
	if way == wayMulti && (replicated || len(b.Fields) < multiMin || !b.MultiEligible()) {
		way = wayScript
	}
	// The first attempt runs without a context deadline of its own (a timer
	// and a context per batch cost more than the rest of a small publish):
	// rueidis bounds a dead connection by itself, and retries, which are
	// the slow path, get the deadline.
	deadline := time.Now().Add(w.c.cfg.PublishTimeout)
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	defer func() { cancel() }()
	bound := func() {
		if _, ok := ctx.Deadline(); !ok {
			ctx, cancel = context.WithDeadline(context.Background(), deadline)
		}
	}
	if w.c.cfg.PublishTimeout < rdb.ConnWriteTimeout || replicated {
		// (replicated: WAIT is a blocking command, for which the driver
		// clears the socket's deadline: only the context bounds it.)
		bound()
	}
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var res rdb.AppendResult
		var err error
		w.mu.Lock()
		b.Confirmed = w.lane[lane].confirmed
		w.mu.Unlock()
		fence := &w.lane[lane].fence
		switch way {
		case wayPlain:
			var n int64
			if replicated {
				n = int64(w.c.cfg.Replicas)
			}
			res, err = w.c.db.AppendPlain(ctx, fence, b, n, w.c.cfg.ReplicationTimeout.Milliseconds())
			if errors.Is(err, rdb.ErrPlainUnsupported) {
				way = wayScript // nothing was written: send the batch through the script
				attempt--
				continue
			}
		case wayMulti:
			res, err = w.c.db.AppendMulti(ctx, fence, b)
		default:
			// A plain append of this lane lost earlier (and given up) may
			// still be queued on the server: kill its connection first, as
			// the next plain append would.
			if err = w.c.db.KillSuspect(ctx, fence, w.keys); err != nil {
				break
			}
			if replicated {
				res, err = w.c.db.AppendReplicated(ctx, b, int64(w.c.cfg.Replicas), w.c.cfg.ReplicationTimeout.Milliseconds())
			} else {
				res, err = w.c.db.Append(ctx, b)
			}
			fence.Disarm()
			w.mu.Lock()
			w.lane[lane].scriptUnsure = err != nil && rdb.Transient(err)
			w.mu.Unlock()
		}
		if rdb.IsGap(err) {
			// An earlier batch of this partition is still on its way (or being
			// retried): wait for it without counting a failure.
			bound()
			select {
			case <-ctx.Done():
				return res, fmt.Errorf("%w (an earlier batch did not settle: %v)", ErrPublishTimeout, err)
			case <-time.After(200 * time.Microsecond):
			}
			continue
		}
		w.c.health.record(w.t, w.p, err)
		if err == nil && w.c.testHookAppended != nil {
			if err = w.c.testHookAppended(); err != nil && way == wayPlain {
				fence.Lost(b.Seq) // as a lost reply would leave it
			}
		}
		if err == nil {
			if res.Replay {
				w.c.log.Info("publish retry answered by the first append", "topic", w.t.name, "partition", w.p, "seq", b.Seq)
			}
			return res, nil
		}
		if !rdb.Transient(err) {
			return res, err
		}
		w.c.log.Warn("publish retry", "topic", w.t.name, "partition", w.p, "attempt", attempt, "err", err)
		bound()
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("%w (last error: %v)", ErrPublishTimeout, err)
		case <-time.After(backoff):
		}
		if backoff < 500*time.Millisecond {
			backoff *= 2
		}
	}
}

// stateTTL keeps a producer's sequence state at least as long as a batch can
// be retried, and at least the dedupe window.
func stateTTL(cfg TopicConfig) int64 {
	ttl := cfg.DedupeWindow
	if ttl < time.Hour {
		ttl = time.Hour
	}
	return ttl.Milliseconds()
}

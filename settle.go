package herald

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

// How a partition run's deliveries settle and are acknowledged: the
// states of a delivery, the read batch that is acknowledged as a unit, and
// the run's acker (acks the reader does not send with its next read).

// ackerDone is closed when the run's acker has exited.
func (p *pstate) ackerDone() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ackDone == nil {
		p.ackDone = make(chan struct{})
	}
	return p.ackDone
}

// waitIdle waits until every event the run read is finished and acknowledged.
func (p *pstate) waitIdle() {
	for p.inflight.Load() > 0 {
		time.Sleep(2 * time.Millisecond)
	}
}

// Delivery states.
const (
	stPending  uint32 = iota // handed to a worker, not finished
	stAck                    // handled or filtered: acknowledge with the batch
	stSkip                   // finished without an ack: left pending, or settled by a script
	stDeferred               // parked behind its key or waiting for a retry: acknowledged alone later
	stTrimmed                // deleted from the stream while pending: acked and counted
)

// rbatch is one read batch; it is acknowledged as a unit when its last
// event is finished.
type rbatch struct {
	p       *pstate
	items   []dlv
	left    atomic.Int32
	read    time.Time
	touched atomic.Int64 // unix ns of the last keep-alive (unordered)
}

// dlv is one delivery.
type dlv struct {
	b      *rbatch
	stream string
	retry  bool // read from the group's retry stream
	parked bool // held back behind its key or for a retry: settled alone
	id     string
	prior  int64 // failed attempts recorded in Redis before this delivery (ordered)
	state  atomic.Uint32
	msg    Message
}

// finish records how d was settled within its batch; the batch learns it
// with settled, once per slice a worker was handed.
func (d *dlv) finish(st uint32) {
	if st == stDeferred {
		// Parked: its batch is acknowledged without it; it is settled
		// alone later (finishDeferred may change its state before the
		// batch completes, parked never changes).
		d.parked = true
		d.b.p.deferred.Add(1)
	}
	d.state.Store(st)
}

// settled counts n more events of the batch as finished; the call that
// finishes the batch sends its acks: to the acker, or, when it runs on the
// partition's reader (onReader), with the reader's next read.
func (b *rbatch) settled(n int, onReader bool) {
	if b.left.Add(-int32(n)) != 0 {
		return
	}
	req := ackReq{}
	for i := range b.items {
		it := &b.items[i]
		if it.parked {
			continue
		}
		switch it.state.Load() {
		case stAck:
			req.add(it)
		case stTrimmed:
			req.trimmed = append(req.trimmed, it)
		}
		req.n++
	}
	if !b.read.IsZero() {
		b.p.mu.Lock()
		delete(b.p.out, b)
		b.p.mu.Unlock()
	}
	if onReader && len(req.trimmed) == 0 {
		b.p.readerAcks = append(b.p.readerAcks, req)
		return
	}
	b.p.acks <- req
}

// flushReaderAcks hands the reader's held acks to the acker; the reader
// calls it before anything that may wait.
func (p *pstate) flushReaderAcks() {
	for _, r := range p.readerAcks {
		p.acks <- r
	}
	p.readerAcks = p.readerAcks[:0]
}

// takeReaderAcks returns the reader's held acks merged for one round trip,
// and the requests they came from.
func (p *pstate) takeReaderAcks() (rdb.Acks, []ackReq) {
	reqs := p.readerAcks
	if len(reqs) == 0 {
		return rdb.Acks{}, nil
	}
	p.readerAcks = nil
	var a rdb.Acks
	for _, r := range reqs {
		a.Main, a.Retry, a.Clear = append(a.Main, r.main...), append(a.Retry, r.retry...), append(a.Clear, r.clear...)
	}
	return a, reqs
}

// finishDeferred settles an event that was parked (its batch is done).
func (d *dlv) finishDeferred(st uint32) {
	d.state.Store(st)
	d.b.p.deferred.Add(-1)
	req := ackReq{n: 1}
	if st == stAck {
		req.add(d)
	}
	d.b.p.acks <- req
}

// ackReq is what a finished batch (or a deferred event) asks the acker.
type ackReq struct {
	n       int // events it settles (in-flight and budget given back)
	main    []string
	retry   []string
	clear   []string // attempt counts to forget
	trimmed []*dlv
}

func (r *ackReq) add(d *dlv) {
	if d.retry {
		r.retry = append(r.retry, d.id)
	} else {
		r.main = append(r.main, d.id)
	}
	if d.prior > 0 || d.msg.Attempt > 1 {
		r.clear = append(r.clear, d.id)
	}
}

// ackerBatch is the most ack requests the acker merges into one round trip.
const ackerBatch = 256

// acker sends the acknowledgements of the run's finished batches: whatever
// has queued up goes in one pipelined round trip.
func (p *pstate) acker() {
	defer close(p.ackerDone())
	e := p.e
	for {
		var first ackReq
		select {
		case first = <-p.acks:
		case <-p.quit:
			return
		}
		reqs := []ackReq{first}
	more:
		for len(reqs) < ackerBatch {
			select {
			case r := <-p.acks:
				reqs = append(reqs, r)
			default:
				break more
			}
		}
		var main, retry, clear []string
		var trimmed []*dlv
		n := 0
		for _, r := range reqs {
			main, retry, clear = append(main, r.main...), append(retry, r.retry...), append(clear, r.clear...)
			trimmed = append(trimmed, r.trimmed...)
			n += r.n
		}
		if len(main)+len(retry) > 0 {
			p.send(main, retry, clear)
		}
		for _, d := range trimmed {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			k, err := e.c.db.AckCount(ctx, d.stream, e.group, []string{d.id}, d.retry)
			cancel()
			if err == nil && k > 0 {
				// Counted once: only the ack that removed it from the group's pending list.
				e.stats.trimmed.Add(k)
				e.c.log.Warn("pending entry was trimmed before it was handled; acked and dropped", "topic", e.t.name, "stream", d.stream, "id", d.id)
			}
		}
		p.inflight.Add(-int64(n))
		e.budget.give(n)
	}
}

func (p *pstate) send(main, retry, clear []string) {
	e := p.e
	for try := 0; try < 3; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := e.c.db.AckPart(ctx, p.pk, e.group, main, retry, clear)
		cancel()
		if err == nil || rdb.IsNoGroup(err) {
			return
		}
		e.noteErr("ack", err)
		if !rdb.Transient(err) {
			return
		}
		time.Sleep(time.Duration(50*(try+1)) * time.Millisecond)
	}
	// Unacknowledged entries stay pending and are delivered again: at-least-once.
}

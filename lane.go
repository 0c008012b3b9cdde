package herald

import (
	"strconv"

	"github.com/heraldbus/herald/internal/rdb"
)

// lanes is how many batches of one partition may be in flight at once.
// Each lane is an independent idempotent producer (its own sequence and
// state key, {tag}:p:<producer>[/<lane>]) with one batch in flight, so its
// batches can never reach Redis out of order. Events with a key (and those
// sent with ToPartition) all go through lane 0, in call order; keyless
// events take any idle lane. A window of 8 batches on one sequence was
// built and measured first: batches sent from several goroutines reached
// Redis out of order so often (half of the calls answered HERALD_GAP) that
// it moved fewer events. One batch in flight per partition made a keyless
// event wait for the batch before it: at 20k events/s that was most of the
// publish-to-handler latency (docs/design.md). Four, not two: on 16 cores
// Publish from 16 and 64 goroutines moved 0.83x and 0.76x of raw XADD per
// call with two lanes, 0.96x and 0.93x with four (on 2 cores the same
// within the noise). A lane dials its connection when it first sends, so
// lanes 2 and 3 cost a connection only on partitions that once had more
// than two batches in flight.
const lanes = 4

// multiMin is the smallest batch appended as a transaction (rdb.Fence)
// instead of by stream_append.lua: per event the transaction costs Redis
// 1.0-1.1 µs against the script's 1.3-1.5 µs, but it needs a connection of
// the lane's own and one more round trip whenever the lane's WATCH has to
// be set again; small batches are about latency, big ones about throughput.
const multiMin = 64

// laneState is one lane's producer sequence.
type laneState struct {
	fence    rdb.Fence // the lane's transaction connection, used by its one batch in flight
	inflight bool
	// scriptUnsure: the lane's last script call ended with its outcome
	// unknown (its batch may still run): its next batches take the script
	// until one succeeds (appendWithRetry). Under partWriter.mu.
	scriptUnsure bool
	nextSeq      int64          // the next batch's sequence number (from 1)
	confirmed    int64          // every batch up to this one is settled
	settled      map[int64]bool // settled batches above confirmed

	// The lane's one batch in flight, made anew in these for every batch
	// (takeLocked, flush) instead of allocated: only the lane's sender
	// touches them while the batch is in flight.
	b         batch
	ab        rdb.AppendBatch
	abFields  [][]string // ab's own Fields and DedupeIDs when the batch joins requests
	abDedupes []string
}

type batch struct {
	lane     int
	producer string
	seq      int64
	reqs     []*pubReq
	n        int
	reqs1    [1]*pubReq // room for one request: a single Publish allocates no slice
}

// takeLocked forms the next batch on an idle lane, or returns nil when
// nothing is queued that an idle lane may take. Ordered requests go to
// lane 0, with keyless ones after them when there is room; keyless ones
// alone go to the first idle lane. w.mu must be held.
func (w *partWriter) takeLocked() *batch {
	l := -1
	switch {
	case len(w.ordered) > 0 && !w.lane[0].inflight:
		l = 0
	case len(w.free) > 0:
		for i := range w.lane {
			if !w.lane[i].inflight {
				l = i
				break
			}
		}
	}
	if l < 0 {
		return nil
	}
	b := &w.lane[l].b
	reqs := b.reqs[:0]
	*b = batch{lane: l}
	b.reqs = reqs
	if b.reqs == nil {
		b.reqs = b.reqs1[:0]
	}
	if w.prods[l] == "" {
		w.prods[l] = w.producer(l)
	}
	b.producer = w.prods[l]
	max := w.c.cfg.MaxBatch
	take := func(q []*pubReq) []*pubReq {
		k := 0
		for k < len(q) && (b.n == 0 || b.n+len(q[k].fields) <= max) {
			b.n += len(q[k].fields)
			b.reqs = append(b.reqs, q[k])
			k++
		}
		clear(q[:k]) // the array holds no request once taken
		if k == len(q) {
			return q[:0] // the queue's array serves the next requests
		}
		return q[k:]
	}
	if l == 0 {
		w.ordered = take(w.ordered)
	}
	before := b.n
	w.free = take(w.free)
	w.queued.Add(int64(before - b.n))
	ls := &w.lane[l]
	if ls.nextSeq == 0 {
		ls.nextSeq = 1
	}
	b.seq = ls.nextSeq
	ls.nextSeq++
	ls.inflight = true
	w.idle--
	w.busy.Store(w.idle == 0)
	return b
}

// settleLocked records that batch seq of lane l will not be sent again
// (appended, or given up), and advances confirmed over every settled batch.
func (w *partWriter) settleLocked(l int, seq int64) {
	ls := &w.lane[l]
	if ls.settled == nil {
		ls.settled = map[int64]bool{}
	}
	ls.settled[seq] = true
	for ls.settled[ls.confirmed+1] {
		delete(ls.settled, ls.confirmed+1)
		ls.confirmed++
	}
}

// closeFences returns the transaction connections of the lanes that have
// no batch in flight (a lane with one keeps its connection until Close).
func (w *partWriter) closeFences() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.lane {
		if !w.lane[i].inflight {
			w.lane[i].fence.Close()
		}
	}
}

// producer is the producer id of lane l in Redis keys.
func (w *partWriter) producer(l int) string {
	if l == 0 {
		return w.c.cfg.ProducerID
	}
	return w.c.cfg.ProducerID + "/" + strconv.Itoa(l)
}

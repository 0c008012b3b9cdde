package herald

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/rdb"
)

// PublishOption adjusts one Publish or PublishBatch call.
type PublishOption func(*publishOptions)

type publishOptions struct {
	partition  int // -1: by key
	atomic     bool
	durability Durability
}

// WithDurability sets the durability of this publish, overriding the topic's.
func WithDurability(d Durability) PublishOption { return func(o *publishOptions) { o.durability = d } }

// Atomic makes PublishBatch all-or-nothing: every event becomes visible, or
// none does. Events of one partition (one key) are always appended by one
// script call; with Atomic, a batch spanning partitions is appended by one
// script over all of them on standalone Redis, and refused on a Redis
// Cluster, where partitions live in different slots (Redis has no
// cross-slot transactions). A batch spanning partitions is acknowledged
// when the master has it (Memory durability; Position.Replicas is -1).
func Atomic() PublishOption { return func(o *publishOptions) { o.atomic = true } }

// ToPartition publishes to partition p instead of choosing by key.
func ToPartition(p int) PublishOption { return func(o *publishOptions) { o.partition = p } }

// Publish appends one event to topic and returns its position. Concurrent
// calls are coalesced into pipelined batches. An event whose ID the caller
// set is stored once within the topic's dedupe window: publishing it again
// returns the first position with Duplicate set.
func (c *Client) Publish(ctx context.Context, topicName string, ev Event, opts ...PublishOption) (Position, error) {
	f := &PublishFuture{c: c, topic: topicName}
	if err := c.publishOne(ctx, f, &ev, opts, false); err != nil {
		return Position{}, err
	}
	return f.Wait(ctx)
}

// PublishBatch appends events to topic and returns their positions, in order.
// The events of one partition are appended by one script call (atomic per
// partition); events without a key all go to one partition. Either every
// event is validated or none is written. When ctx ends first, the call
// returns ctx.Err() while the batch may still land.
func (c *Client) PublishBatch(ctx context.Context, topicName string, evs []Event, opts ...PublishOption) ([]Position, error) {
	if err := c.enterPublish(); err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		c.leavePublish()
		return nil, nil
	}
	pr, err := c.prepare(ctx, topicName, evs, opts)
	if err != nil {
		c.leavePublish()
		return nil, err
	}
	t, byPart, order := pr.t, pr.byPart, pr.order
	if pr.opts.atomic && len(byPart) > 1 {
		defer c.leavePublish()
		return c.publishAtomic(ctx, t, byPart, order)
	}
	if len(byPart) == 1 {
		for p, r := range byPart {
			t.writers[p].submit(r, true) // sends from this goroutine when a slot is free
		}
	} else {
		var wg sync.WaitGroup
		for p, r := range byPart {
			wg.Go(func() { t.writers[p].submit(r, true) })
		}
		wg.Wait()
	}
	c.leavePublish()
	out := make([]Position, len(evs))
	var firstErr error
	for p, r := range byPart {
		select {
		case <-r.doneChan():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if r.err != nil && firstErr == nil {
			firstErr = fmt.Errorf("herald: publish to %s partition %d: %w", topicName, p, r.err)
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	degraded := false
	for i, o := range order {
		out[i] = c.position(o.p, byPart[o.p], o.i)
		degraded = degraded || out[i].Degraded
	}
	if degraded {
		return out, c.degraded()
	}
	return out, nil
}

// PublishAsync queues ev for topic and returns without waiting for Redis;
// the returned future settles once the event is appended (or has failed).
// Queued events join the batches of every other publish to the partition,
// so one goroutine can keep thousands of events in flight: this is the
// fastest way to publish a stream of events. Events with the same key (or
// sent with ToPartition) land in the order their PublishAsync calls
// returned; keyless events have no order among themselves. At most
// Config.MaxPending events are queued per client; PublishAsync waits
// (until ctx ends) while that many are. Bad input, an unknown topic or an
// ended ctx settle the future at once with the error. Close sends what is
// queued before it returns.
func (c *Client) PublishAsync(ctx context.Context, topicName string, ev Event, opts ...PublishOption) *PublishFuture {
	f := &PublishFuture{c: c, topic: topicName}
	f.err = c.publishOne(ctx, f, &ev, opts, true)
	if f.err != nil {
		f.req.settle()
	}
	return f
}

// publishOne validates, encodes and queues one event for f. async: take a
// Client.pending slot and leave the sending to the writer; otherwise send
// from this goroutine when a lane is free (Publish).
func (c *Client) publishOne(ctx context.Context, f *PublishFuture, ev *Event, opts []PublishOption, async bool) error {
	if err := c.enterPublish(); err != nil {
		return err
	}
	defer c.leavePublish()
	t, o, dur, err := c.publishTarget(ctx, f.topic, opts)
	if err != nil {
		return err
	}
	keyless := -1
	p, dedupe, err := t.place(f.topic, o, ev, &keyless)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if async {
		select {
		case c.pending <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r := &f.req
	r.replicated, r.async = dur == Replicated, async
	r.ordered = ev.Key != "" || o.partition >= 0
	r.fields = append(r.fields1[:0], codec.Append(r.fieldsBuf[:0], (*codec.Event)(ev)))
	r.dedupe = append(r.dedupe1[:0], dedupe)
	f.p = p
	t.writers[p].submit(r, !async)
	return nil
}

// PublishFuture is the outcome of a PublishAsync call.
type PublishFuture struct {
	c     *Client
	topic string
	p     int
	req   pubReq // settled when the outcome is known
	err   error  // set before req is settled
}

var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// Done is closed when the outcome is known.
func (f *PublishFuture) Done() <-chan struct{} { return f.req.doneChan() }

// Wait returns the event's position once it is appended, or the error that
// stopped it (ctx.Err() when ctx ends first; the event may still land).
// Errors are those of Publish.
func (f *PublishFuture) Wait(ctx context.Context) (Position, error) {
	if !f.req.settled.Load() {
		select {
		case <-f.req.doneChan():
		case <-ctx.Done():
			return Position{}, ctx.Err()
		}
	}
	if f.err != nil {
		return Position{}, f.err
	}
	if f.req.err != nil {
		return Position{}, fmt.Errorf("herald: publish to %s partition %d: %w", f.topic, f.p, f.req.err)
	}
	pos := f.c.position(f.p, &f.req, 0)
	if pos.Degraded {
		return pos, f.c.degraded()
	}
	return pos, nil
}

// position is event i of r, appended to partition p.
func (c *Client) position(p int, r *pubReq, i int) Position {
	pos := Position{Partition: p, ID: r.res.Positions[i], Duplicate: r.res.Dup[i], Replicas: int(r.res.Acked)}
	pos.Degraded = r.replicated && r.res.Acked < int64(c.cfg.Replicas)
	return pos
}

// degraded counts a publish that fewer replicas acknowledged than asked, and
// returns the error it is when Config.FailUnreplicated is set.
func (c *Client) degraded() error {
	c.stats.degraded.Add(1)
	if c.cfg.FailUnreplicated {
		return fmt.Errorf("%w (asked for %d, within %s)", ErrNotReplicated, c.cfg.Replicas, c.cfg.ReplicationTimeout)
	}
	return nil
}

// prepared is a publish call validated and encoded, split by partition.
type prepared struct {
	t      *topic
	opts   publishOptions
	byPart map[int]*pubReq
	order  []struct{ p, i int } // per event: partition and index in its pubReq
}

// publishTarget resolves the options and the topic of a publish call.
func (c *Client) publishTarget(ctx context.Context, topicName string, opts []PublishOption) (*topic, publishOptions, Durability, error) {
	o := publishOptions{partition: -1}
	if len(opts) > 0 {
		o = applyOptions(opts)
	}
	t, err := c.topic(ctx, topicName, true)
	if err != nil {
		return nil, o, 0, err
	}
	dur := o.durability
	if dur == DurabilityDefault {
		dur = t.cfg.Durability
	}
	if dur != Memory && dur != Replicated {
		return nil, o, 0, invalid("durability %d is not supported; use herald.Memory or herald.Replicated", dur)
	}
	if o.partition >= len(t.parts) {
		return nil, o, 0, invalid("partition %d does not exist; topic %q has %d (0..%d)", o.partition, topicName, len(t.parts), len(t.parts)-1)
	}
	return t, o, dur, nil
}

// applyOptions is apart from publishTarget so that the options escape (to
// the option functions) only when there are some.
func applyOptions(opts []PublishOption) publishOptions {
	o := publishOptions{partition: -1}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// place validates ev, sets its id when missing and chooses its partition.
// dedupe is the id to deduplicate by ("" for none). *keyless is the
// partition of the call's keyless events (-1: not chosen yet).
func (t *topic) place(topicName string, o publishOptions, ev *Event, keyless *int) (p int, dedupe string, err error) {
	if ev.ID != "" || t.cfg.DedupeAll {
		if ev.ID == "" {
			ev.ID = newID()
		}
		if len(ev.ID) > 200 {
			return 0, "", invalid("event id is %d bytes long; use at most 200", len(ev.ID))
		}
		dedupe = ev.ID
	} else {
		ev.ID = newID()
	}
	for name := range ev.Headers {
		if !codec.ValidHeaderName(name) {
			return 0, "", invalid("header name %q: use 1-256 printable ASCII characters without spaces", name)
		}
	}
	if n := codec.Size((*codec.Event)(ev)); n > t.cfg.MaxEventBytes {
		return 0, "", fmt.Errorf("%w: %d bytes, the limit of topic %q is %d (TopicConfig.MaxEventBytes)", ErrTooLarge, n, topicName, t.cfg.MaxEventBytes)
	}
	p = o.partition
	switch {
	case p >= 0:
	case ev.Key == "" && dedupe != "":
		// A caller-set id is deduplicated per partition, so the same id
		// must always land in the same partition.
		p = t.partitionFor(ev.ID)
	case ev.Key == "":
		// Keyless events of one call stay together: one script call.
		if *keyless < 0 {
			*keyless = t.partitionFor("")
		}
		p = *keyless
	default:
		p = t.partitionFor(ev.Key)
	}
	return p, dedupe, nil
}

// prepare validates and encodes evs for topicName, so that bad input
// writes nothing, and places each event on a partition.
func (c *Client) prepare(ctx context.Context, topicName string, evs []Event, opts []PublishOption) (prepared, error) {
	t, o, dur, err := c.publishTarget(ctx, topicName, opts)
	if err != nil {
		return prepared{}, err
	}
	byPart := make(map[int]*pubReq, 1)
	order := make([]struct{ p, i int }, len(evs))
	keyless := -1
	for i := range evs {
		ev := evs[i] // the caller's slice is not modified
		p, dedupe, err := t.place(topicName, o, &ev, &keyless)
		if err != nil {
			return prepared{}, err
		}
		r := byPart[p]
		if r == nil {
			r = &pubReq{replicated: dur == Replicated}
			r.fields, r.dedupe = r.fields1[:0], r.dedupe1[:0]
			byPart[p] = r
		}
		r.ordered = r.ordered || ev.Key != "" || o.partition >= 0
		order[i] = struct{ p, i int }{p, len(r.fields)}
		ce := (*codec.Event)(&ev)
		r.fields = append(r.fields, codec.Append(make([]string, 0, codec.FieldCount(ce)), ce))
		r.dedupe = append(r.dedupe, dedupe)
	}
	return prepared{t: t, opts: o, byPart: byPart, order: order}, nil
}

func newID() string { return ids.next() }

// pubReq is one caller's events for one partition.
type pubReq struct {
	replicated bool // wait for replicas after the append
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
// publish-to-handler latency (docs/design.md).
const lanes = 2

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
	queued  atomic.Int64 // events in free, for keyless placement (topic.go)
	busy    atomic.Bool  // every lane has a batch in flight, for keyless placement
	lane    [lanes]laneState
	idle    int // lanes without a batch in flight
}

// multiMin is the smallest batch appended as a transaction (rdb.Fence)
// instead of by stream_append.lua: per event the transaction costs Redis
// 1.0-1.1 µs against the script's 1.3-1.5 µs, but it needs a connection of
// the lane's own and one more round trip whenever the lane's WATCH has to
// be set again; small batches are about latency, big ones about throughput.
const multiMin = 64

// laneState is one lane's producer sequence.
type laneState struct {
	fence     rdb.Fence // the lane's transaction connection, used by its one batch in flight
	inflight  bool
	nextSeq   int64          // the next batch's sequence number (from 1)
	confirmed int64          // every batch up to this one is settled
	settled   map[int64]bool // settled batches above confirmed
}

type batch struct {
	lane int
	seq  int64
	reqs []*pubReq
	n    int
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
	b := &batch{lane: l}
	max := w.c.cfg.MaxBatch
	take := func(q []*pubReq) []*pubReq {
		k := 0
		for k < len(q) && (b.n == 0 || b.n+len(q[k].fields) <= max) {
			b.n += len(q[k].fields)
			b.reqs = append(b.reqs, q[k])
			k++
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

// sendLoop sends b and then whatever is queued, until mine is done (the
// rest is left to a new goroutine) or nothing is left. c.writers counts it.
func (w *partWriter) sendLoop(b *batch, mine *pubReq) {
	defer w.c.writers.Done()
	for b != nil {
		w.flush(b)
		w.mu.Lock()
		w.lane[b.lane].inflight = false
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

func (w *partWriter) flush(bt *batch) {
	b := &rdb.AppendBatch{Keys: w.keys, Producer: w.producer(bt.lane), Seq: bt.seq, MaxLen: w.t.cfg.MaxLen,
		DedupeMS: w.t.cfg.DedupeWindow.Milliseconds(), StateTTL: stateTTL(w.t.cfg),
		DedupeIDs: make([]string, 0, bt.n), Fields: make([][]string, 0, bt.n)}
	if w.t.cfg.MaxAge > 0 {
		b.MinID = fmt.Sprintf("%d-0", time.Now().Add(-w.t.cfg.MaxAge).UnixMilli())
	}
	replicated := false
	for _, r := range bt.reqs {
		b.DedupeIDs = append(b.DedupeIDs, r.dedupe...)
		b.Fields = append(b.Fields, r.fields...)
		replicated = replicated || r.replicated
	}
	res, err := w.appendWithRetry(b, bt.lane, replicated)
	off := 0
	for _, r := range bt.reqs {
		if err != nil {
			r.err = err
		} else {
			k := len(r.fields)
			r.res = rdb.AppendResult{Replay: res.Replay, Positions: res.Positions[off : off+k], Dup: res.Dup[off : off+k], Acked: res.Acked}
			off += k
		}
		r.settle()
		if r.async {
			<-w.c.pending
		}
	}
}

// appendWithRetry sends the batch until it is confirmed, retrying errors
// whose outcome is unknown with the same sequence number: if an earlier send
// landed, the script answers with the positions of that first append.
func (w *partWriter) appendWithRetry(b *rdb.AppendBatch, lane int, replicated bool) (rdb.AppendResult, error) {
	// Big batches of plain events go as a WATCH-guarded transaction, the
	// others through the script; one batch keeps its way over its retries
	// (each answers a repeated sequence from its own records).
	multi := !replicated && len(b.Fields) >= multiMin && b.MultiEligible()
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
	if w.c.cfg.PublishTimeout < rdb.ConnWriteTimeout {
		bound()
	}
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var res rdb.AppendResult
		var err error
		w.mu.Lock()
		b.Confirmed = w.lane[lane].confirmed
		w.mu.Unlock()
		switch {
		case multi:
			res, err = w.c.db.AppendMulti(ctx, &w.lane[lane].fence, b)
		case replicated:
			res, err = w.c.db.AppendReplicated(ctx, b, int64(w.c.cfg.Replicas), w.c.cfg.ReplicationTimeout.Milliseconds())
			w.lane[lane].fence.Disarm()
		default:
			res, err = w.c.db.Append(ctx, b)
			w.lane[lane].fence.Disarm()
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
			err = w.c.testHookAppended()
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

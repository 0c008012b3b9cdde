package herald

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
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
	at         int64 // delivery time in unix ms (Delay, At, schedule.go); 0: at once
	degrade    bool  // AllowDegraded
}

// AllowDegraded accepts a Replicated publish that fewer replicas than
// Config.Replicas acknowledged: it returns its positions with Degraded set
// instead of ErrNotReplicated (as Config.AllowDegraded does for every call).
func AllowDegraded() PublishOption { return func(o *publishOptions) { o.degrade = true } }

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
	if c.tracing.on() {
		return c.publishTraced(ctx, topicName, ev, opts)
	}
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
	if c.tracing.on() && ctx.Value(batchTraced{}) == nil {
		return c.publishBatchTraced(ctx, topicName, evs, opts)
	}
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
	if pr.opts.at != 0 {
		defer c.leavePublish()
		return c.scheduleBatch(ctx, pr, len(evs))
	}
	if pr.opts.atomic && len(byPart) > 1 {
		defer c.leavePublish()
		return c.publishAtomic(ctx, t, byPart, order, pr.opts.degrade)
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
		return out, c.degraded(pr.opts.degrade, out)
	}
	return out, nil
}

// publishAtomic appends a batch spanning partitions with one script call.
// A fresh batch id makes a re-sent batch (after an unknown outcome) answer
// with the positions of its first append instead of appending again.
func (c *Client) publishAtomic(ctx context.Context, t *topic, byPart map[int]*pubReq, order []struct{ p, i int }, degrade bool) ([]Position, error) {
	if c.db.IsCluster() {
		ps := make([]int, 0, len(byPart))
		for p := range byPart {
			ps = append(ps, p)
		}
		sort.Ints(ps)
		return nil, invalid("atomic batch spans partitions %v of topic %q, which live in different cluster slots; "+
			"Redis Cluster has no cross-slot transactions: give the events one partition key, or publish without Atomic", ps, t.name)
	}
	parts := make([]int, 0, len(byPart))
	for p := range byPart {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	var replicas int64 // Replicated: the batch's WAIT (prepare marks every request alike)
	if byPart[parts[0]].replicated {
		replicas = int64(c.cfg.Replicas)
	}
	aps := make([]rdb.AtomicPart, len(parts))
	offset := map[int]int{}
	off := 0
	for i, p := range parts {
		r := byPart[p]
		aps[i] = rdb.AtomicPart{Keys: t.parts[p], DedupeIDs: r.dedupe, Fields: r.fields}
		offset[p] = off
		off += len(r.fields)
	}
	minID := ""
	if t.cfg.MaxAge > 0 {
		minID = fmt.Sprintf("%d-0", time.Now().Add(-t.cfg.MaxAge).UnixMilli())
	}
	batchID := "tx-" + newID()
	start := time.Now() // metrics.go
	rctx, cancel := context.WithTimeout(ctx, c.cfg.PublishTimeout)
	defer cancel()
	var res rdb.AppendResult
	var err error
	for backoff := 5 * time.Millisecond; ; backoff = min(2*backoff, 500*time.Millisecond) {
		res, err = c.db.AppendAtomic(rctx, batchID, aps, t.cfg.MaxLen, minID, t.cfg.DedupeWindow.Milliseconds(), stateTTL(t.cfg),
			replicas, c.cfg.ReplicationTimeout.Milliseconds())
		if err == nil && c.testHookAppended != nil {
			err = c.testHookAppended()
		}
		if err == nil || !rdb.Transient(err) {
			break
		}
		select {
		case <-rctx.Done():
			return nil, fmt.Errorf("%w (last error: %v)", ErrPublishTimeout, err)
		case <-time.After(backoff):
		}
	}
	c.metrics.appended(t.name, start, &res, err, off)
	if err != nil {
		return nil, fmt.Errorf("herald: atomic publish to %s: %w", t.name, err)
	}
	out := make([]Position, len(order))
	for i, o := range order {
		k := offset[o.p] + o.i
		out[i] = Position{Partition: o.p, ID: res.Positions[k], Duplicate: res.Dup[k], Replicas: int(res.Acked),
			Degraded: replicas > 0 && res.Acked < replicas}
	}
	if replicas > 0 && res.Acked < replicas {
		return out, c.degraded(degrade, out)
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
// ended ctx settle the future at once with the error. Shutdown and Close
// send what is queued before they return.
func (c *Client) PublishAsync(ctx context.Context, topicName string, ev Event, opts ...PublishOption) *PublishFuture {
	if c.tracing.on() {
		return c.publishAsyncTraced(ctx, topicName, ev, opts)
	}
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
	if o.at != 0 {
		return c.scheduleOne(ctx, f, t, p, ev, o.at)
	}
	if async {
		if err := c.pending.take(ctx); err != nil {
			return err
		}
	}
	r := &f.req
	r.replicated, r.async, r.degrade = dur == Replicated, async, o.degrade
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
		return pos, f.c.degraded(f.req.degrade, []Position{pos})
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
// returns ErrNotReplicated unless the caller accepted degrading (the
// AllowDegraded option or Config.AllowDegraded).
func (c *Client) degraded(allowed bool, ps []Position) error {
	c.stats.degraded.Add(1)
	if allowed || c.cfg.AllowDegraded {
		return nil
	}
	acked := c.cfg.Replicas
	for _, p := range ps {
		if p.Degraded {
			acked = min(acked, p.Replicas)
		}
	}
	return fmt.Errorf("%w: %d of %d replica(s) acknowledged within %s, and the events are stored on the master only; "+
		"give the master a replica (replicaof) or wait for the shard to have one again, "+
		"or accept degraded publishes with herald.AllowDegraded() or Config.AllowDegraded (herald publish --allow-degraded)",
		ErrNotReplicated, max(acked, 0), c.cfg.Replicas, c.cfg.ReplicationTimeout)
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
	t := c.cachedTopic(topicName)
	if t == nil {
		var err error
		if t, err = c.loadPublishTopic(ctx, topicName); err != nil {
			return nil, o, 0, err
		}
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

// loadPublishTopic loads (or creates) a topic that a publish names for the
// first time. The lookup is bounded by Config.PublishTimeout like the append
// itself, so that a publish to a new topic while Redis is down fails in time
// even when ctx has no deadline.
func (c *Client) loadPublishTopic(ctx context.Context, topicName string) (*topic, error) {
	lctx, cancel := context.WithTimeout(ctx, c.cfg.PublishTimeout)
	defer cancel()
	t, err := c.topic(lctx, topicName, true)
	// The driver may answer a deadline by its own timer, just before lctx
	// reports it.
	if err != nil && ctx.Err() == nil && (lctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)) {
		return nil, fmt.Errorf("%w (looking up topic %q: %v)", ErrPublishTimeout, topicName, err)
	}
	return t, err
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
	// The events' fields are cut out of shared chunks (an id and data
	// field each when nothing else is set), not one slice per event: on
	// many cores the garbage collector's share of a batch's client CPU
	// grows with every allocation.
	var chunk []string
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
			if len(byPart) == 0 && len(evs) > 1 {
				// The first partition gets room for every event left:
				// keyless events of a batch all go to one partition.
				r.fields, r.dedupe = make([][]string, 0, len(evs)-i), make([]string, 0, len(evs)-i)
			}
			byPart[p] = r
		}
		r.ordered = r.ordered || ev.Key != "" || o.partition >= 0
		order[i] = struct{ p, i int }{p, len(r.fields)}
		ce := (*codec.Event)(&ev)
		n := codec.FieldCount(ce)
		if cap(chunk)-len(chunk) < n {
			chunk = make([]string, 0, max(n, 4*(len(evs)-i)))
		}
		start := len(chunk)
		chunk = codec.Append(chunk, ce)
		r.fields = append(r.fields, chunk[start:len(chunk):len(chunk)])
		r.dedupe = append(r.dedupe, dedupe)
	}
	return prepared{t: t, opts: o, byPart: byPart, order: order}, nil
}

func newID() string { return ids.next() }

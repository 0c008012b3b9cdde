package herald

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
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
// cross-slot transactions).
func Atomic() PublishOption { return func(o *publishOptions) { o.atomic = true } }

// ToPartition publishes to partition p instead of choosing by key.
func ToPartition(p int) PublishOption { return func(o *publishOptions) { o.partition = p } }

// Publish appends one event to topic and returns its position. Concurrent
// calls are coalesced into pipelined batches. An event whose ID the caller
// set is stored once within the topic's dedupe window: publishing it again
// returns the first position with Duplicate set.
func (c *Client) Publish(ctx context.Context, topicName string, ev Event, opts ...PublishOption) (Position, error) {
	ps, err := c.PublishBatch(ctx, topicName, []Event{ev}, opts...)
	if err != nil {
		return Position{}, err
	}
	return ps[0], nil
}

// PublishBatch appends events to topic and returns their positions, in order.
// The events of one partition are appended by one script call (atomic per
// partition). Either every event is validated or none is written. When ctx
// ends first, the call returns ctx.Err() while the batch may still land.
func (c *Client) PublishBatch(ctx context.Context, topicName string, evs []Event, opts ...PublishOption) ([]Position, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, nil
	}
	o := publishOptions{partition: -1}
	for _, opt := range opts {
		opt(&o)
	}
	t, err := c.topic(ctx, topicName, true)
	if err != nil {
		return nil, err
	}
	dur := o.durability
	if dur == DurabilityDefault {
		dur = t.cfg.Durability
	}
	if dur != Memory && dur != Replicated {
		return nil, invalid("durability %d is not supported; use herald.Memory or herald.Replicated", dur)
	}
	if o.partition >= len(t.parts) {
		return nil, invalid("partition %d does not exist; topic %q has %d (0..%d)", o.partition, topicName, len(t.parts), len(t.parts)-1)
	}
	// Encode everything first, so that bad input writes nothing.
	byPart := map[int]*pubReq{}
	order := make([]struct{ p, i int }, len(evs))
	for i := range evs {
		e := evs[i] // the caller's slice is not modified
		ev := &e
		dedupe := ""
		if ev.ID != "" || t.cfg.DedupeAll {
			if ev.ID == "" {
				ev.ID = newID()
			}
			if len(ev.ID) > 200 {
				return nil, invalid("event id is %d bytes long; use at most 200", len(ev.ID))
			}
			dedupe = ev.ID
		} else {
			ev.ID = newID()
		}
		for name := range ev.Headers {
			if !codec.ValidHeaderName(name) {
				return nil, invalid("header name %q: use 1-256 printable ASCII characters without spaces", name)
			}
		}
		ce := (*codec.Event)(ev)
		if n := codec.Size(ce); n > t.cfg.MaxEventBytes {
			return nil, fmt.Errorf("%w: %d bytes, the limit of topic %q is %d (TopicConfig.MaxEventBytes)", ErrTooLarge, n, topicName, t.cfg.MaxEventBytes)
		}
		p := o.partition
		if p < 0 {
			p = t.partitionFor(ev.Key)
		}
		r := byPart[p]
		if r == nil {
			r = &pubReq{done: make(chan struct{}), replicated: dur == Replicated}
			byPart[p] = r
		}
		order[i] = struct{ p, i int }{p, len(r.fields)}
		r.fields = append(r.fields, codec.Append(make([]string, 0, 16), ce))
		r.dedupe = append(r.dedupe, dedupe)
	}
	if o.atomic && len(byPart) > 1 {
		return c.publishAtomic(ctx, t, byPart, order)
	}
	for p, r := range byPart {
		if t.writers[p].enqueue(r) {
			if len(byPart) == 1 {
				t.writers[p].flushUntil(r) // idle writer: send from this goroutine, no hand-off
			} else {
				c.writers.Add(1)
				go t.writers[p].flushLoop()
			}
		}
	}
	out := make([]Position, len(evs))
	var firstErr error
	for p, r := range byPart {
		select {
		case <-r.done:
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
		r := byPart[o.p]
		out[i] = Position{Partition: o.p, ID: r.res.Positions[o.i], Duplicate: r.res.Dup[o.i], Replicas: int(r.res.Acked)}
		if r.replicated && r.res.Acked < int64(c.cfg.Replicas) {
			out[i].Degraded, degraded = true, true
		}
	}
	if degraded {
		c.stats.degraded.Add(1)
		if c.cfg.FailUnreplicated {
			return out, fmt.Errorf("%w (asked for %d, within %s)", ErrNotReplicated, c.cfg.Replicas, c.cfg.ReplicationTimeout)
		}
	}
	return out, nil
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// pubReq is one caller's events for one partition.
type pubReq struct {
	replicated bool // wait for replicas after the append
	fields     [][]string
	dedupe     []string
	res        rdb.AppendResult
	err        error
	done       chan struct{}
}

// partWriter coalesces the requests for one partition into batches, one
// batch in flight at a time, each with the next sequence number of this
// producer. Different partitions flush concurrently (and are pipelined on
// the connection).
type partWriter struct {
	c    *Client
	t    *topic
	p    int
	keys rdb.PartKeys

	mu      sync.Mutex
	queue   []*pubReq
	running bool
	seq     int64 // owned by the flushing goroutine
}

// enqueue queues r; when the writer was idle it reports true and the caller
// becomes the flusher (with c.writers already counting it).
func (w *partWriter) enqueue(r *pubReq) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = append(w.queue, r)
	if w.running {
		return false
	}
	w.running = true
	return true
}

// flushLoop sends batches until the queue is empty.
func (w *partWriter) flushLoop() {
	defer w.c.writers.Done()
	for w.flushOne() {
	}
}

// flushUntil sends batches from the caller's goroutine until r is done, then
// leaves what others queued meanwhile to a goroutine of its own.
func (w *partWriter) flushUntil(r *pubReq) {
	w.c.writers.Add(1)
	for {
		if !w.flushOne() {
			w.c.writers.Done()
			return
		}
		select {
		case <-r.done:
			go w.flushLoop() // keeps the writer running and the count held
			return
		default:
		}
	}
}

// flushOne sends one batch; false when the queue was empty (the writer is
// then idle again).
func (w *partWriter) flushOne() bool {
	w.mu.Lock()
	if len(w.queue) == 0 {
		w.running = false
		w.mu.Unlock()
		return false
	}
	n, k := 0, 0
	for k < len(w.queue) && (k == 0 || n+len(w.queue[k].fields) <= w.c.cfg.MaxBatch) {
		n += len(w.queue[k].fields)
		k++
	}
	batch := w.queue[:k:k]
	w.queue = w.queue[k:]
	w.mu.Unlock()
	w.flush(batch, n)
	return true
}

func (w *partWriter) flush(reqs []*pubReq, n int) {
	w.seq++
	b := &rdb.AppendBatch{Keys: w.keys, Producer: w.c.cfg.ProducerID, Seq: w.seq, MaxLen: w.t.cfg.MaxLen,
		DedupeMS: w.t.cfg.DedupeWindow.Milliseconds(), StateTTL: stateTTL(w.t.cfg),
		DedupeIDs: make([]string, 0, n), Fields: make([][]string, 0, n)}
	if w.t.cfg.MaxAge > 0 {
		b.MinID = fmt.Sprintf("%d-0", time.Now().Add(-w.t.cfg.MaxAge).UnixMilli())
	}
	replicated := false
	for _, r := range reqs {
		b.DedupeIDs = append(b.DedupeIDs, r.dedupe...)
		b.Fields = append(b.Fields, r.fields...)
		replicated = replicated || r.replicated
	}
	res, err := w.appendWithRetry(b, replicated)
	off := 0
	for _, r := range reqs {
		if err != nil {
			r.err = err
		} else {
			k := len(r.fields)
			r.res = rdb.AppendResult{Replay: res.Replay, Positions: res.Positions[off : off+k], Dup: res.Dup[off : off+k], Acked: res.Acked}
			off += k
		}
		close(r.done)
	}
}

// appendWithRetry sends the batch until it is confirmed, retrying errors
// whose outcome is unknown with the same sequence number: if an earlier send
// landed, the script answers with the positions of that first append.
func (w *partWriter) appendWithRetry(b *rdb.AppendBatch, replicated bool) (rdb.AppendResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.c.cfg.PublishTimeout)
	defer cancel()
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var res rdb.AppendResult
		var err error
		if replicated {
			res, err = w.c.db.AppendReplicated(ctx, b, int64(w.c.cfg.Replicas), w.c.cfg.ReplicationTimeout.Milliseconds())
		} else {
			res, err = w.c.db.Append(ctx, b)
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

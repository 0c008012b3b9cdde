package herald

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/rdb"
)

// Placement: where an event goes is decided here, and only here.
//
//   - ToPartition(p): partition p.
//   - A key: fnv32a(key) mod partitions, so one key keeps one partition (order
//     per key).
//   - No key but an id to deduplicate by: by the id, so that a repeated id
//     meets its first copy in the same partition's dedupe records.
//   - No key: the keyless choice below (keylessPartition), one partition for
//     all keyless events of one call. It sticks to a busy partition while a
//     batch is forming there and skips partitions whose last append failed
//     transiently (health.record), so keyless events keep flowing while one
//     shard fails over.

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
	if err := validHeaders(ev); err != nil {
		return 0, "", err
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

// Keyless placement: while every lane of a partition has a batch in flight,
// events without a key join the batch forming behind them (up to
// stickyEvents events, or until the queue holds stickyQueue or the
// partition fails), so that many concurrent publishers fill a few large
// batches instead of many small ones (each batch is one script call or
// transaction). A queue of MaxBatch (512) lets PublishAsync fill whole
// batches: with 128, batches of 8 partitions stayed at 128-256 events and
// PublishAsync moved 0.59-0.63x of raw pipelined XADD instead of 0.71-0.72x.
//
// A partition with an idle lane is kept for stickyFor after it was chosen,
// then left: under a steady load the keyless events of the whole client go
// to one partition at a time (its lanes, its reader), and at low rates
// (fewer than one event per stickyFor) they go round robin. Spreading every
// event over all partitions kept every lane's connection and every reader
// of the topic busy with one event each: at 20,000 events/s on 2 cores that
// made the publish-to-handler p99 1.6-2.7x raw, against 0.9-1.6x when the
// events stay on one partition for a while (docs/design.md).
const (
	stickyEvents = 1024
	stickyQueue  = 512
	stickyFor    = 10 * time.Millisecond
)

func (t *topic) keylessPartition() int {
	if len(t.parts) == 1 {
		return 0
	}
	cur := int(t.sticky.Load())
	w := t.writers[cur]
	if !t.down[cur].Load() {
		if w.busy.Load() {
			if w.queued.Load() < stickyQueue && t.stuck.Add(1) <= stickyEvents {
				return cur
			}
		} else if time.Duration(nanotime()-t.stuckAt.Load()) < stickyFor {
			return cur
		}
	}
	p := t.healthyPartition()
	t.sticky.Store(int64(p))
	t.stuck.Store(1)
	t.stuckAt.Store(nanotime())
	return p
}

func (t *topic) partitionFor(key string) int {
	n := len(t.parts)
	if n == 1 {
		return 0
	}
	if key == "" {
		return t.keylessPartition()
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// record notes the outcome of an append to partition p of t: a transient
// error marks the partition down (keyless events avoid it), a success
// marks it up again.
func (h *health) record(t *topic, p int, err error) {
	if err != nil && !rdb.Transient(err) {
		return // a definitive reply: the partition itself is up
	}
	down := err != nil
	if down {
		t.downAt[p].Store(nanotime())
	}
	if down == t.down[p].Load() {
		return
	}
	t.down[p].Store(down)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failing == nil {
		h.failing = map[*topic]map[int]time.Time{}
	}
	if down {
		if h.failing[t] == nil {
			h.failing[t] = map[int]time.Time{}
		}
		h.failing[t][p] = time.Now()
	} else {
		delete(h.failing[t], p)
	}
}

// downProbe is how often keyless events try a partition marked down: only
// an append can find it up again, so without a probe a partition whose
// shard came back would get no keyless event until a keyed one landed.
const downProbe = time.Second

// healthyPartition picks the next keyless partition, skipping unhealthy ones
// while a healthy one exists; once per downProbe an unhealthy one gets an
// event, as a probe (it is healthy again when that append succeeds).
func (t *topic) healthyPartition() int {
	n := len(t.parts)
	start := t.rr.Add(1)
	for i := 0; i < n; i++ {
		p := int((start + uint64(i)) % uint64(n))
		if t.down[p].Load() {
			if at := t.downAt[p].Load(); nanotime()-at >= int64(downProbe) && t.downAt[p].CompareAndSwap(at, nanotime()) {
				return p // the probe
			}
			continue
		}
		if i > 0 {
			t.rr.Add(uint64(i))
		}
		return p
	}
	return int(start % uint64(n))
}

// clockBase anchors nanotime.
var clockBase = time.Now()

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(clockBase)) }

// maxHeaders bounds the headers of one event. Redis's scripts pass an
// entry's fields to XADD as one argument list, which Lua caps at about
// 8,000 values: an event with more fields could not be retried, dead-
// lettered or moved from the delay queue, and a batch holding one would
// be written in part.
const maxHeaders = 1000

// validHeaders checks the header names of ev and their number.
func validHeaders(ev *Event) error {
	if len(ev.Headers) > maxHeaders {
		return invalid("event has %d headers; use at most %d (put the rest in Data)", len(ev.Headers), maxHeaders)
	}
	for name := range ev.Headers {
		if !codec.ValidHeaderName(name) {
			return invalid("header name %q: use 1-256 printable ASCII characters without spaces", name)
		}
	}
	return nil
}

package herald

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/rdb"
)

// Delayed and scheduled events. A publish with Delay or At does not append
// the event: it waits in its partition's delay schedule (a sorted set by due
// time plus a hash of payloads, on the partition's hash tag) and is moved to
// the partition stream when due by any Client that has the topic loaded
// (every such client runs a mover, see delayMover). From the stream every
// group receives it as it receives any other event.

// Delay publishes the event d from now instead of at once: it is appended
// to the topic, and so delivered to every group, once d has passed. The due
// time is this machine's now + d, and Redis moves the event when its clock
// reaches it: keep the clocks in sync (NTP), or a Redis clock ahead of this
// machine's delivers early by as much. The returned Position has the partition and an
// empty ID (the event has no stream position yet); list and cancel the
// event by its id (set Event.ID to know it, or use Client.Schedule). A
// negative d is refused. Scheduling is idempotent by event id: scheduling
// an id that is already waiting returns Duplicate. d counts from the call
// to Delay. A delayed publish is acknowledged once the master stored it in
// the schedule (Memory durability; Replicated is not waited for), and
// PublishAsync with Delay schedules before it returns. The topic's dedupe
// window does not apply when the event is moved to the stream.
func Delay(d time.Duration) PublishOption {
	at := dueMS(time.Now().Add(d))
	if d < 0 {
		at = -1
	}
	return func(o *publishOptions) { o.at = at }
}

// At publishes the event at t instead of at once (see Delay). A time in the
// past makes the event due at once; the zero time is refused. Due times are
// kept in whole milliseconds, rounded up, so that nothing is delivered
// before t.
func At(t time.Time) PublishOption {
	at := dueMS(t)
	if t.IsZero() || at <= 0 {
		at = -1
	}
	return func(o *publishOptions) { o.at = at }
}

// ScheduledEvent is a delayed event waiting for its time.
type ScheduledEvent struct {
	Event
	Partition int
	Due       time.Time
}

// ScheduleFilter selects scheduled events for Client.ScheduledEvents.
type ScheduleFilter struct {
	// ID selects one event by id ("" = all).
	ID string
	// Limit is the most events returned (default 100, at most 10,000), the
	// earliest due first.
	Limit int
}

// Schedule publishes ev at the given time and returns the scheduled event
// (its id, partition and due time). It is Publish with At(at).
func (c *Client) Schedule(ctx context.Context, topicName string, ev Event, at time.Time, opts ...PublishOption) (ScheduledEvent, error) {
	if ev.ID == "" {
		ev.ID = newID()
	}
	pos, err := c.Publish(ctx, topicName, ev, append(opts[:len(opts):len(opts)], At(at))...)
	if err != nil {
		return ScheduledEvent{}, err
	}
	return ScheduledEvent{Event: ev, Partition: pos.Partition, Due: time.UnixMilli(dueMS(at))}, nil
}

// dueMS is t in Unix milliseconds, rounded up: the schedule counts whole
// milliseconds, and an event must never be delivered before its time (a
// time rounded down was delivered up to 1 ms early).
func dueMS(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.After(time.UnixMilli(ms)) {
		ms++
	}
	return ms
}

// checkAt validates a delivery time set by Delay or At.
func checkAt(at int64) error {
	if at < 0 {
		return invalid("delivery time: a delay must not be negative and a time must be set; use Delay(d >= 0) or At(t)")
	}
	return nil
}

// scheduleOne is publishOne for an event with a delivery time: it goes to
// the partition's delay schedule instead of a writer.
func (c *Client) scheduleOne(ctx context.Context, f *PublishFuture, t *topic, p int, ev *Event, at int64) error {
	if err := checkAt(at); err != nil {
		return err
	}
	fields := codec.Append(nil, (*codec.Event)(ev))
	added, err := c.db.ScheduleAdd(ctx, t.parts[p], []string{ev.ID}, []int64{at}, [][]string{fields})
	if err != nil {
		return fmt.Errorf("herald: schedule on %s partition %d: %w", t.name, p, err)
	}
	c.delayScheduled(t, at)
	f.p = p
	f.req.res = rdb.AppendResult{Positions: []string{""}, Dup: []bool{!added[0]}, Acked: -1}
	f.req.settle()
	return nil
}

// scheduleBatch is PublishBatch for events with a delivery time.
func (c *Client) scheduleBatch(ctx context.Context, pr prepared, n int) ([]Position, error) {
	if err := checkAt(pr.opts.at); err != nil {
		return nil, err
	}
	dup := map[int][]bool{}
	for p, r := range pr.byPart {
		ids := make([]string, len(r.fields))
		due := make([]int64, len(r.fields))
		for i, f := range r.fields {
			ids[i], due[i] = f[1], pr.opts.at // codec.Append writes the id first
		}
		added, err := c.db.ScheduleAdd(ctx, pr.t.parts[p], ids, due, r.fields)
		if err != nil {
			return nil, fmt.Errorf("herald: schedule on %s partition %d: %w", pr.t.name, p, err)
		}
		dup[p] = added
	}
	c.delayScheduled(pr.t, pr.opts.at)
	out := make([]Position, n)
	for i, o := range pr.order {
		out[i] = Position{Partition: o.p, Duplicate: !dup[o.p][o.i], Replicas: -1}
	}
	return out, nil
}

// ScheduledEvents lists the topic's delayed events that are still waiting,
// the earliest due first, and how many wait in all.
func (c *Client) ScheduledEvents(ctx context.Context, topicName string, f ScheduleFilter) ([]ScheduledEvent, int64, error) {
	if err := c.checkOpen(); err != nil {
		return nil, 0, err
	}
	if f.Limit < 0 || f.Limit > 10000 {
		return nil, 0, invalid("limit %d out of range; use 1..10000 (0 = 100)", f.Limit)
	}
	if f.Limit == 0 {
		f.Limit = 100
	}
	t, err := c.topic(ctx, topicName, false)
	if err != nil {
		return nil, 0, err
	}
	var out []ScheduledEvent
	var total int64
	for p, pk := range t.parts {
		n, ds, err := c.db.ScheduleList(ctx, pk, 0, int64(f.Limit), f.ID)
		if err != nil {
			return nil, 0, fmt.Errorf("herald: list scheduled events of %s partition %d: %w", topicName, p, err)
		}
		total += n
		for _, d := range ds {
			ev, _, _ := codec.Decode(d.Pairs, "")
			out = append(out, ScheduledEvent{Event: Event(ev), Partition: p, Due: time.UnixMilli(d.DueMS)})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Due.Equal(out[j].Due) {
			return out[i].Due.Before(out[j].Due)
		}
		return out[i].ID < out[j].ID
	})
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, total, nil
}

// CancelScheduled cancels a delayed event that has not been delivered yet.
// It reports whether one was cancelled (false: no event with this id is
// waiting, because it was delivered, cancelled before, or never scheduled).
func (c *Client) CancelScheduled(ctx context.Context, topicName, id string) (bool, error) {
	if err := c.checkOpen(); err != nil {
		return false, err
	}
	if id == "" {
		return false, invalid("event id is empty; name the scheduled event to cancel")
	}
	t, err := c.topic(ctx, topicName, false)
	if err != nil {
		return false, err
	}
	for p, pk := range t.parts {
		ok, err := c.db.ScheduleCancel(ctx, pk, id)
		if err != nil {
			return false, fmt.Errorf("herald: cancel scheduled event on %s partition %d: %w", topicName, p, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// The mover. Every Client runs one per loaded topic: it wakes at the
// earliest due time it knows of (from its own schedules and the scripts'
// answers), and at least every 50-100 ms (jittered) to pick up events that
// other clients scheduled. One script per partition pops the due events and
// appends them atomically, so movers of many clients never move an event
// twice.
const (
	delayPollMin  = 50 * time.Millisecond
	delayPollJit  = 50 * time.Millisecond
	delayMoveMax  = 512 // events moved per partition per script call
	delayCallTime = 5 * time.Second
)

type delayMover struct {
	c    *Client
	t    *topic
	hint atomic.Int64 // earliest due time (ms) scheduled by this client since the mover last looked
	wake chan struct{}
}

// movers maps a loaded *topic to its mover.
var movers sync.Map

// startDelayMover starts the topic's mover; called once per cached topic.
func (c *Client) startDelayMover(t *topic) {
	m := &delayMover{c: c, t: t, wake: make(chan struct{}, 1)}
	m.hint.Store(math.MaxInt64)
	if _, loaded := movers.LoadOrStore(t, m); loaded {
		return
	}
	go m.run()
}

// delayScheduled tells the topic's mover that an event is due at (ms).
func (c *Client) delayScheduled(t *topic, at int64) {
	v, ok := movers.Load(t)
	if !ok {
		return
	}
	m := v.(*delayMover)
	for {
		h := m.hint.Load()
		if at >= h || m.hint.CompareAndSwap(h, at) {
			break
		}
	}
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// alive reports whether the mover should go on: the client is open and the
// topic is still the cached one (not deleted).
func (m *delayMover) alive() bool {
	return m.c.publishing.Load()&closingBit == 0 && m.c.cachedTopic(m.t.name) == m.t
}

// topicCheckEvery is how often a client checks that a topic it has cached
// still exists as it was (checkCached): a topic deleted, and maybe created
// again with another partition count, by another client is dropped from the
// cache within about this long.
const topicCheckEvery = 5 * time.Second

func (m *delayMover) run() {
	defer movers.Delete(m.t)
	next := int64(math.MaxInt64) // earliest due time known, ms
	lastRetain, lastCheck := time.Now(), time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if h := m.hint.Swap(math.MaxInt64); h < next {
			next = h
		}
		wait := delayPollMin + time.Duration(rand.Int64N(int64(delayPollJit)))
		if next != math.MaxInt64 {
			// +1 ms: the schedule's scores are whole milliseconds.
			if d := time.Until(time.UnixMilli(next + 1)); d < wait {
				wait = max(d, 0)
			}
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-m.wake:
			if !timer.Stop() {
				<-timer.C
			}
			continue
		}
		if !m.alive() {
			return
		}
		next = m.moveOnce()
		if time.Since(lastCheck) >= topicCheckEvery {
			lastCheck = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), delayCallTime)
			m.c.checkCached(ctx, m.t) // topic.go; when it drops t, alive ends this mover
			cancel()
		}
		if m.t.retains() && time.Since(lastRetain) >= retentionEvery {
			lastRetain = time.Now()
			m.retain() // retention.go
		}
	}
}

// moveOnce moves what is due on every partition and returns the earliest
// due time left (math.MaxInt64: none known), on this machine's clock: Redis
// judges what is due by its own, so the wait is the time from Redis's now
// to the next due time (with Redis's clock behind this one, a wait for the
// due time on this clock would end before Redis sees it due, and the mover
// would call again at once until it does).
func (m *delayMover) moveOnce() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), delayCallTime)
	defer cancel()
	next := int64(math.MaxInt64)
	minID := ""
	if m.t.cfg.MaxAge > 0 { // as a publish trims (writer.go)
		minID = fmt.Sprintf("%d-0", time.Now().Add(-m.t.cfg.MaxAge).UnixMilli())
	}
	for _, r := range m.c.db.MoveDue(ctx, m.t.parts, delayMoveMax, m.t.cfg.MaxLen, minID) {
		switch {
		case r.Err != nil:
			if m.alive() {
				m.c.log.Debug("moving due delayed events", "topic", m.t.name, "err", r.Err)
			}
		case r.Moved == delayMoveMax:
			next = 0 // more are due: go again at once
		case r.NextDueMS >= 0:
			if at := time.Now().UnixMilli() + r.NextDueMS - r.NowMS; at < next {
				next = at
			}
		}
	}
	return next
}

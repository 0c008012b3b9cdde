package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald"
)

// The hub shares Redis readers between clients. Each topic that has live
// tails (SSE, WebSocket) has one feed in the process: one tail of its
// partitions (Client.Monitor wakes it; one range read per woken
// partition), whatever the number of clients. A feed hands each read
// batch to every subscriber's bounded buffer without waiting; a subscriber
// whose buffer is full is marked lagged and catches up by position from
// Redis (short range reads through the client's pool, never a connection
// of its own), so a slow client never holds up the others and is never
// buffered without bound. A client that cannot take what it is sent is
// disconnected by the write timeout and resumes with Last-Event-ID.
//
// Goroutines: one per feed (plus the monitor's readers), owned by the hub;
// a feed stops feedLinger after its last subscriber leaves.

// feedBuffer is the read batches buffered per subscriber before it is
// marked lagged (a variable for the tests only, export_test.go).
var feedBuffer = 64

// feedLinger is how long a feed (tail or group) outlives its last
// subscriber, so that a client that reconnects at once finds it running.
// A variable for the tests only (export_test.go).
var feedLinger = 5 * time.Second

// Hub tuning.
const (
	feedPage  = 500         // events per range read
	feedSweep = time.Second // every partition is read this often (new partitions, missed wake-ups)
)

// tailHub owns the feeds of the process.
type tailHub struct {
	g      *Gateway
	mu     sync.Mutex
	feeds  map[string]*topicFeed
	wg     sync.WaitGroup
	closed bool
}

func newTailHub(g *Gateway) *tailHub { return &tailHub{g: g, feeds: map[string]*topicFeed{}} }

// topicFeed tails one topic for every subscriber of the process.
type topicFeed struct {
	h      *tailHub
	topic  string
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	subs    map[*tailSub]struct{}
	cursor  []string // next stream id to read per partition (inclusive); nil until the topic exists
	err     error    // set when the feed ended with an error
	idle    *time.Timer
	ended   bool
	ready   chan struct{} // closed once the first look at the topic is done
	initErr error         // what that look met
}

// feedBatch is a run of consecutive events of one partition: every event
// of the partition from stream id from (inclusive) up to the last one.
type feedBatch struct {
	partition int
	from      string
	events    []*feedEvent
}

// feedEvent is an event read once and encoded at most once per format for
// every client.
type feedEvent struct {
	msg      herald.Message
	pos      string // "<partition>/<stream id>"
	id       string // stream id
	next     string // the smallest stream id after it (a subscriber's cursor once it is sent)
	heraldJS []byte
	ceOnce   sync.Once
	ceJS     []byte
}

func newFeedEvent(e *herald.StoredEvent) *feedEvent {
	fe := &feedEvent{msg: herald.Message{Event: e.Event, Topic: e.Topic, Partition: e.Partition, Position: e.Position}, id: e.Position}
	fe.pos = fe.msg.Pos().String()
	fe.next = nextID(e.Position)
	return fe
}

// payload is the event's encoding in format (herald or cloudevents).
func (fe *feedEvent) payload(format string) []byte {
	if format == "cloudevents" {
		fe.ceOnce.Do(func() { fe.ceJS = eventPayload(&fe.msg, format) })
		return fe.ceJS
	}
	if fe.heraldJS == nil { // read for one subscriber only
		fe.heraldJS = eventPayload(&fe.msg, format)
	}
	return fe.heraldJS
}

// tailSub is one subscriber of a feed.
type tailSub struct {
	ch     chan *feedBatch
	lagged atomic.Bool
	ended  chan struct{} // closed when the feed ends
}

// join subscribes to topic's feed, starting it when there is none; cursor
// is a copy of the feed's cursor at the moment of joining (nil when the
// topic does not exist yet): every batch after it reaches sub. A feed's
// first look at the topic happens outside the hub's lock, so a slow Redis
// holds up the joins of that topic only.
func (h *tailHub) join(ctx context.Context, topic string) (*topicFeed, *tailSub, []string, error) {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, nil, nil, errorf(503, CodeShuttingDown, "the server is shutting down; reconnect in a moment")
		}
		f := h.feeds[topic]
		if f == nil {
			fctx, cancel := context.WithCancel(h.g.streamCtx)
			f = &topicFeed{h: h, topic: topic, ctx: fctx, cancel: cancel, subs: map[*tailSub]struct{}{}, ready: make(chan struct{})}
			h.feeds[topic] = f
			h.wg.Add(1)
			h.mu.Unlock()
			cur, err := f.endCursors()
			f.mu.Lock()
			f.cursor, f.initErr = cur, err
			f.mu.Unlock()
			if err != nil {
				h.mu.Lock()
				if h.feeds[topic] == f {
					delete(h.feeds, topic)
				}
				h.mu.Unlock()
				cancel()
				h.wg.Done()
			} else {
				go f.run()
			}
			close(f.ready)
		} else {
			h.mu.Unlock()
		}
		select {
		case <-f.ready:
		case <-ctx.Done():
			return nil, nil, nil, ctx.Err()
		}
		if f.initErr != nil {
			return nil, nil, nil, f.initErr
		}
		sub := &tailSub{ch: make(chan *feedBatch, feedBuffer), ended: make(chan struct{})}
		f.mu.Lock()
		if f.ended { // it stopped just now: forget it and start another
			f.mu.Unlock()
			h.mu.Lock()
			if h.feeds[topic] == f {
				delete(h.feeds, topic)
			}
			h.mu.Unlock()
			continue
		}
		if f.idle != nil {
			f.idle.Stop()
			f.idle = nil
		}
		f.subs[sub] = struct{}{}
		cur := append([]string(nil), f.cursor...)
		f.mu.Unlock()
		h.g.metrics.hubSubscribers.Inc()
		return f, sub, cur, nil
	}
}

// leave unsubscribes sub; the feed stops feedLinger after its last subscriber.
func (f *topicFeed) leave(sub *tailSub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[sub]; !ok {
		return
	}
	delete(f.subs, sub)
	f.h.g.metrics.hubSubscribers.Dec()
	if len(f.subs) == 0 && !f.ended && f.idle == nil {
		f.idle = time.AfterFunc(feedLinger, f.stopIfIdle)
	}
}

func (f *topicFeed) stopIfIdle() {
	f.h.mu.Lock()
	f.mu.Lock()
	idle := len(f.subs) == 0
	if idle {
		f.ended = true // no one joins it any more
		if f.h.feeds[f.topic] == f {
			delete(f.h.feeds, f.topic)
		}
	}
	f.mu.Unlock()
	f.h.mu.Unlock()
	if idle {
		f.cancel()
	}
}

// endCursors are cursors at the end of each partition (a feed starts
// now); nil when the topic does not exist.
func (f *topicFeed) endCursors() ([]string, error) {
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	ti, err := f.h.g.c.TopicInfo(ctx, f.topic)
	if errors.Is(err, herald.ErrTopicNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cur := make([]string, len(ti.Partitions))
	for i, pi := range ti.Partitions {
		cur[i] = "0-0"
		if pi.LastID != "" {
			cur[i] = nextID(pi.LastID)
		}
	}
	return cur, nil
}

// run is the feed's goroutine.
func (f *topicFeed) run() {
	defer f.h.wg.Done()
	f.h.g.metrics.hubFeeds.Inc()
	defer f.h.g.metrics.hubFeeds.Dec()
	err := f.loop()
	f.mu.Lock()
	f.ended, f.err = true, err
	for sub := range f.subs {
		close(sub.ended)
	}
	f.mu.Unlock()
	f.h.mu.Lock()
	if f.h.feeds[f.topic] == f {
		delete(f.h.feeds, f.topic)
	}
	f.h.mu.Unlock()
}

func (f *topicFeed) loop() error {
	mon, err := f.h.g.c.Monitor(f.ctx, herald.MonitorFilter{Topics: f.topic, SkipChannels: true})
	if err != nil {
		return err
	}
	sweep := time.NewTicker(feedSweep)
	defer sweep.Stop()
	if err := f.readAll(); err != nil {
		return err
	}
	for {
		select {
		case <-f.ctx.Done():
			return nil
		case <-sweep.C:
			if err := f.readAll(); err != nil && f.ctx.Err() == nil {
				f.h.g.log.Warn("live tail read failed; retrying", "topic", f.topic, "err", err)
			}
		case ev, ok := <-mon:
			if !ok {
				return nil
			}
			woken := map[int]bool{ev.Partition: true}
		more:
			for {
				select {
				case ev, ok := <-mon:
					if !ok {
						break more
					}
					woken[ev.Partition] = true
				default:
					break more
				}
			}
			for p := range woken {
				if err := f.read(p); err != nil && f.ctx.Err() == nil {
					f.h.g.log.Warn("live tail read failed; retrying", "topic", f.topic, "partition", p, "err", err)
				}
			}
		}
	}
}

func (f *topicFeed) readAll() error {
	if f.cursor == nil {
		cur, err := f.endCursors()
		if err != nil || cur == nil {
			return err
		}
		for i := range cur { // a topic created after the feed started: all of it is new
			cur[i] = "0-0"
		}
		f.mu.Lock()
		f.cursor = cur
		f.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	ti, err := f.h.g.c.TopicInfo(ctx, f.topic)
	cancel()
	if err == nil && len(ti.Partitions) > len(f.cursor) {
		f.mu.Lock()
		for len(f.cursor) < len(ti.Partitions) {
			f.cursor = append(f.cursor, "0-0")
		}
		f.mu.Unlock()
	}
	for p := range f.cursor {
		if err := f.read(p); err != nil {
			return err
		}
	}
	return nil
}

// read reads partition p from the feed's cursor to its end and broadcasts.
func (f *topicFeed) read(p int) error {
	if p >= len(f.cursor) {
		return f.readAll()
	}
	for {
		ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
		es, err := f.h.g.c.Events(ctx, f.topic, herald.Query{Partitions: []int{p}, From: f.cursor[p], Limit: feedPage})
		cancel()
		if err != nil {
			return err
		}
		if len(es) == 0 {
			return nil
		}
		b := &feedBatch{partition: p, from: f.cursor[p], events: make([]*feedEvent, len(es))}
		for i := range es {
			fe := newFeedEvent(&es[i])
			fe.heraldJS = eventPayload(&fe.msg, "herald")
			b.events[i] = fe
		}
		f.mu.Lock()
		f.cursor[p] = nextID(es[len(es)-1].Position)
		for sub := range f.subs {
			select {
			case sub.ch <- b:
			default:
				if !sub.lagged.Swap(true) {
					f.h.g.metrics.hubLagged.Inc()
				}
			}
		}
		f.mu.Unlock()
		if len(es) < feedPage {
			return nil
		}
	}
}

// close ends every feed (shutdown).
func (h *tailHub) close() {
	h.mu.Lock()
	h.closed = true
	fs := make([]*topicFeed, 0, len(h.feeds))
	for _, f := range h.feeds {
		fs = append(fs, f)
	}
	h.mu.Unlock()
	for _, f := range fs {
		f.cancel()
	}
}

func (h *tailHub) wait() { h.wg.Wait() }

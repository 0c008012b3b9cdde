package gateway

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald"
)

// Live channels and the monitor go through hubs too: one Listener (one
// Pub/Sub connection) for every channel stream of the process, subscribed
// to the union of their channels and patterns; one Monitor for every
// monitor stream, filtered per client. Pub/Sub keeps nothing, so a client
// whose buffer is full misses messages: they are counted and the client is
// told (a "lagged" event with the count), never buffered without bound.

// liveBuffer is the buffer of one channel or monitor subscriber.
const liveBuffer = 256

// chanHub shares one Listener between the channel streams of the process.
type chanHub struct {
	g    *Gateway
	opMu sync.Mutex // serializes subscription changes (network round trips)

	mu    sync.Mutex // guards the maps; never held across a round trip
	l     *herald.Listener
	chans map[string]map[*chanSub]struct{}
	pats  map[string]map[*chanSub]struct{}
}

// chanSub is one subscriber: a channel, or a pattern.
type chanSub struct {
	name    string
	pattern bool
	ch      chan herald.ChannelMessage
	gaps    chan herald.Gap
	dropped atomic.Int64
	ended   chan struct{} // closed when the shared Listener ends
}

func newChanHub(g *Gateway) *chanHub {
	return &chanHub{g: g, chans: map[string]map[*chanSub]struct{}{}, pats: map[string]map[*chanSub]struct{}{}}
}

// join subscribes to a channel (or a pattern) through the shared Listener.
func (h *chanHub) join(ctx context.Context, name string, pattern bool) (*chanSub, error) {
	sub := &chanSub{name: name, pattern: pattern, ch: make(chan herald.ChannelMessage, liveBuffer),
		gaps: make(chan herald.Gap, 4), ended: make(chan struct{})}
	h.opMu.Lock()
	defer h.opMu.Unlock()
	h.mu.Lock()
	set := h.chans
	if pattern {
		set = h.pats
	}
	first := len(set[name]) == 0
	l := h.l
	h.mu.Unlock()
	switch {
	case l == nil:
		lc := herald.ListenConfig{OnGap: h.gap}
		if pattern {
			lc.Patterns = []string{name}
		} else {
			lc.Channels = []string{name}
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second) // bounds the first subscription only
		nl, err := h.g.c.Listen(lctx, lc)
		cancel()
		if err != nil {
			return nil, err
		}
		h.mu.Lock()
		h.l = nl
		h.mu.Unlock()
		go h.run(nl)
	case first:
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		if pattern {
			err = l.PSubscribe(sctx, name)
		} else {
			err = l.Subscribe(sctx, name)
		}
		cancel()
		if err != nil {
			return nil, err
		}
	}
	h.mu.Lock()
	if set[name] == nil {
		set[name] = map[*chanSub]struct{}{}
	}
	set[name][sub] = struct{}{}
	h.mu.Unlock()
	return sub, nil
}

// leave unsubscribes sub; the shared Listener drops the channel when it was
// the last subscriber, and closes when no channel is left.
func (h *chanHub) leave(sub *chanSub) {
	h.opMu.Lock()
	defer h.opMu.Unlock()
	h.mu.Lock()
	set := h.chans
	if sub.pattern {
		set = h.pats
	}
	delete(set[sub.name], sub)
	last := len(set[sub.name]) == 0
	if last {
		delete(set, sub.name)
	}
	l, empty := h.l, len(h.chans) == 0 && len(h.pats) == 0
	if empty {
		h.l = nil
	}
	h.mu.Unlock()
	if l == nil || !last {
		return
	}
	if empty {
		l.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if sub.pattern {
		_ = l.PUnsubscribe(ctx, sub.name)
	} else {
		_ = l.Unsubscribe(ctx, sub.name)
	}
}

// gap tells every subscriber of a reconnect's gap.
func (h *chanHub) gap(gp herald.Gap) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range []map[string]map[*chanSub]struct{}{h.chans, h.pats} {
		for _, subs := range set {
			for sub := range subs {
				select {
				case sub.gaps <- gp:
				default:
				}
			}
		}
	}
}

// run dispatches the shared Listener's messages.
func (h *chanHub) run(l *herald.Listener) {
	for m := range l.Messages() {
		var subs map[*chanSub]struct{}
		h.mu.Lock()
		switch m.Kind {
		case "message":
			subs = h.chans[m.Channel]
		case "pmessage":
			subs = h.pats[m.Pattern]
		}
		for sub := range subs {
			select {
			case sub.ch <- m:
			default:
				sub.dropped.Add(1)
				h.g.metrics.channelMessages.WithLabelValues("dropped").Inc()
			}
		}
		h.mu.Unlock()
	}
	// The Listener ended (closed, or the client closed): its subscribers end too.
	h.mu.Lock()
	if h.l == l {
		h.l = nil
		for _, set := range []map[string]map[*chanSub]struct{}{h.chans, h.pats} {
			for name, subs := range set {
				for sub := range subs {
					close(sub.ended)
				}
				delete(set, name)
			}
		}
	}
	h.mu.Unlock()
}

// monHub shares one Monitor between the monitor streams of the process.
type monHub struct {
	g      *Gateway
	mu     sync.Mutex
	subs   map[*monSub]struct{}
	cancel context.CancelFunc // of the running Monitor; nil when none runs
	gen    int                // of the running Monitor
}

// monSub is one monitor stream with its filter.
type monSub struct {
	f       herald.MonitorFilter
	ch      chan herald.MonitorEvent
	dropped atomic.Int64
	ended   chan struct{}
}

func newMonHub(g *Gateway) *monHub { return &monHub{g: g, subs: map[*monSub]struct{}{}} }

// join adds a monitor stream, starting the shared Monitor when none runs.
func (h *monHub) join(ctx context.Context, f herald.MonitorFilter) (*monSub, error) {
	if f.Topics == "" {
		f.Topics = "*"
	}
	if f.Channels == "" {
		f.Channels = "*"
	}
	if err := f.Validate(); err != nil {
		return nil, badRequest("topics: %v", err)
	}
	sub := &monSub{f: f, ch: make(chan herald.MonitorEvent, liveBuffer), ended: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.g.closing.Load() {
		return nil, errorf(http.StatusServiceUnavailable, CodeShuttingDown, "the server is shutting down; reconnect in a moment")
	}
	if h.cancel == nil {
		mctx, cancel := context.WithCancel(h.g.streamCtx)
		events, err := h.g.c.Monitor(mctx, herald.MonitorFilter{})
		if err != nil {
			cancel()
			return nil, err
		}
		h.cancel = cancel
		h.gen++
		go h.run(events, cancel, h.gen)
	}
	h.subs[sub] = struct{}{}
	return sub, nil
}

// leave removes a monitor stream; the shared Monitor stops with the last one.
func (h *monHub) leave(sub *monSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
	if len(h.subs) == 0 && h.cancel != nil {
		h.cancel()
		h.cancel = nil
	}
}

func (h *monHub) run(events <-chan herald.MonitorEvent, cancel context.CancelFunc, gen int) {
	for ev := range events {
		h.mu.Lock()
		if h.gen != gen {
			h.mu.Unlock()
			continue // a stopped Monitor's last events
		}
		for sub := range h.subs {
			if !sub.match(&ev) {
				continue
			}
			select {
			case sub.ch <- ev:
			default:
				sub.dropped.Add(1)
			}
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	if h.gen == gen && h.cancel != nil { // it ended by itself: its streams end
		for sub := range h.subs {
			close(sub.ended)
			delete(h.subs, sub)
		}
		h.cancel = nil
	}
	h.mu.Unlock()
	cancel()
}

// match applies the stream's filter (the key's grants are checked by the stream).
func (s *monSub) match(ev *herald.MonitorEvent) bool {
	switch ev.Kind {
	case "event":
		return !s.f.SkipTopics && s.f.MatchTopic(ev.Topic) // '*' matches '/' too
	case "message":
		return !s.f.SkipChannels && globMatch(s.f.Channels, ev.Channel)
	}
	return false
}

package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/heraldbus/herald"
)

// WebSocket group subscriptions: a subscription of a consumer group joins
// the server's one consumer of that group (groupfeed.go) as a member, and
// the client settles each event it is offered with ack or nack messages.

func (c *wsConn) subscribeGroup(ctx context.Context, req *WSRequest, s *wsSub) error {
	if err := herald.ValidateName("topic", req.Topic); err != nil {
		return err
	}
	if err := herald.ValidateName("group", req.Group); err != nil {
		return err
	}
	if !c.p.canGroup(req.Topic, req.Group) {
		return forbidGroup(c.p, req.Topic, req.Group)
	}
	var start herald.Start
	switch req.From {
	case "", "now":
	case "beginning":
		start = herald.StartBeginning
	default:
		return badRequest("from %q: a new group starts at now (the default) or beginning", req.From)
	}
	f, err := c.g.sessions.feedFor(ctx, req.Topic, req.Group, start, req.Filter, req.MaxAttempts)
	if err != nil {
		return err
	}
	m := &wsMember{c: c, id: req.ID, format: req.Format, feed: f}
	if !f.join(m) {
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the group's consumer is restarting; subscribe again in a moment")
	}
	s.member = m
	close(s.done)
	c.send(WSMessage{Type: "subscribed", ID: req.ID, Consumer: f.consumer})
	return nil
}

// wsMember is a WebSocket group subscription, a member of the group's
// feed: it takes events while the connection's max-unacked window has room.
type wsMember struct {
	c      *wsConn
	id     string
	format string
	feed   *groupFeed
	// stopped is guarded by c.mu.
	stopped bool
}

// offer implements groupMember.
func (m *wsMember) offer(d *pendingDelivery) (func(), bool) {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.stopped || c.ctx.Err() != nil {
		return nil, false
	}
	select { // the connection's max-unacked window
	case c.slots <- struct{}{}:
	default:
		return nil, false
	}
	c.pending[m.id+"\x00"+d.pos] = d
	return func() {
		c.g.metrics.observeDelivery(d.msg, "ws")
		if !c.send(WSMessage{Type: "event", ID: m.id, Event: eventPayload(d.msg, m.format)}) {
			m.release(d)
		}
	}, true
}

// settled implements groupMember.
func (m *wsMember) settled(d *pendingDelivery) {
	c := m.c
	c.mu.Lock()
	if k := m.id + "\x00" + d.pos; c.pending[k] == d {
		delete(c.pending, k)
	}
	c.mu.Unlock()
	<-c.slots
}

// expire implements groupMember: d was not acknowledged within the ack
// timeout. The client is told with an error message of code ack_timeout
// naming the position, unless its outgoing buffer is full (it is not
// reading: the write timeout ends it).
func (m *wsMember) expire(d *pendingDelivery) bool {
	c := m.c
	if !m.take(d) {
		return false
	}
	c.g.metrics.delivered.WithLabelValues(m.feed.topic, m.feed.group, "ws", herald.OutcomeTimeout).Inc()
	b, err := json.Marshal(WSMessage{Type: "error", ID: m.id,
		Positions: []PositionJSON{{Position: d.pos, Partition: d.msg.Partition, StreamID: d.msg.Position, EventID: d.msg.ID}},
		Error: &errorDetail{Code: CodeAckTimeout, Message: fmt.Sprintf("event %s was not acknowledged within %s (ack_timeout) and went back to the group for redelivery; "+
			"acknowledging it now answers an error: ack each event sooner", d.pos, c.g.cfg.AckTimeout)}})
	if err == nil {
		select {
		case c.out <- b:
		default:
		}
	}
	return true
}

// take removes d from the client's unsettled deliveries; false when the
// client settled it already.
func (m *wsMember) take(d *pendingDelivery) bool {
	c := m.c
	c.mu.Lock()
	defer c.mu.Unlock()
	k := m.id + "\x00" + d.pos
	if c.pending[k] != d {
		return false
	}
	delete(c.pending, k)
	return true
}

// release hands d back to the group unless the client settled it.
func (m *wsMember) release(d *pendingDelivery) {
	if m.take(d) {
		d.result <- herald.ErrRelease
	}
}

// stop leaves the feed and releases what the client holds unacknowledged.
func (m *wsMember) stop() {
	c := m.c
	c.mu.Lock()
	m.stopped = true
	var held []*pendingDelivery
	prefix := m.id + "\x00"
	for k, d := range c.pending {
		if strings.HasPrefix(k, prefix) {
			held = append(held, d)
			delete(c.pending, k)
		}
	}
	c.mu.Unlock()
	m.feed.leave(m)
	for _, d := range held {
		d.result <- herald.ErrRelease
	}
	if len(held) > 0 {
		c.g.metrics.delivered.WithLabelValues(m.feed.topic, m.feed.group, "ws", herald.OutcomeTimeout).Add(float64(len(held)))
	}
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldbus/herald"
)

// WSRequest is a client message on /v1/ws (one JSON object per text frame).
//
//	{"op":"subscribe","id":"s1","topic":"orders","group":"billing"}   consumer group: ack each event
//	{"op":"subscribe","id":"s2","topic":"orders","from":"beginning"}  live tail, nothing to ack
//	{"op":"subscribe","id":"s3","channel":"chat"}                    live channel
//	{"op":"subscribe","id":"s4","pattern":"chat.*"}                  channel pattern
//	{"op":"unsubscribe","id":"s1"}
//	{"op":"ack","id":"s1","positions":["0/1700000000000-0"]}
//	{"op":"nack","id":"s1","positions":["0/..."],"permanent":false}
//	{"op":"publish","id":"p1","topic":"orders","events":[{"data":{"n":1}}]}
//	{"op":"publish","id":"p2","channel":"chat","data":"hello"}
type WSRequest struct {
	Op    string `json:"op"`
	ID    string `json:"id"`
	Topic string `json:"topic,omitempty"`
	Group string `json:"group,omitempty"`
	// Client is accepted and ignored: a group subscription is a member of
	// the group's shared consumer in the server (docs/http-api.md).
	Client  string            `json:"client,omitempty"`
	From    string            `json:"from,omitempty"`
	Filter  string            `json:"filter,omitempty"`
	Format  string            `json:"format,omitempty"`
	Channel string            `json:"channel,omitempty"`
	Pattern string            `json:"pattern,omitempty"`
	Events  []json.RawMessage `json:"events,omitempty"`
	Event   json.RawMessage   `json:"event,omitempty"`
	Data    json.RawMessage   `json:"data,omitempty"`
	// MaxAttempts of a group subscription before dead-lettering (default 8).
	MaxAttempts int      `json:"max_attempts,omitempty"`
	Positions   []string `json:"positions,omitempty"`
	Permanent   bool     `json:"permanent,omitempty"`
	Reason      string   `json:"reason,omitempty"`
}

// WSMessage is a server message on /v1/ws.
type WSMessage struct {
	Type      string              `json:"type"` // subscribed, unsubscribed, event, message, published, broadcast, error
	ID        string              `json:"id,omitempty"`
	Event     json.RawMessage     `json:"event,omitempty"`
	Message   *ChannelMessageJSON `json:"message,omitempty"`
	Positions []PositionJSON      `json:"positions,omitempty"`
	Receivers *int                `json:"receivers,omitempty"`
	Consumer  string              `json:"consumer,omitempty"`
	Error     *errorDetail        `json:"error,omitempty"`
}

type wsConn struct {
	g      *Gateway
	p      *principal
	conn   *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	out    chan []byte
	slots  chan struct{} // the max-unacked window
	ops    chan struct{} // publish operations running (Limits.MaxWSInFlight)

	mu      sync.Mutex
	subs    map[string]*wsSub
	pending map[string]*pendingDelivery // "<sub id>\x00<position>"
	work    sync.WaitGroup
}

type wsSub struct {
	cancel context.CancelFunc
	member *wsMember // group subscriptions
	done   chan struct{}
}

func (g *Gateway) wsOriginPatterns() (patterns []string, any bool) {
	for _, o := range g.cfg.CORS.AllowedOrigins {
		if o == "*" {
			return nil, true
		}
		if _, host, ok := strings.Cut(o, "://"); ok {
			o = host
		}
		patterns = append(patterns, o)
	}
	return patterns, false
}

func (g *Gateway) handleWebSocket(w http.ResponseWriter, r *http.Request, p *principal) error {
	window := g.cfg.WebSocket.MaxUnacked
	if v := r.URL.Query().Get("window"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badRequest("window %q: use a positive number (at most %d)", v, g.cfg.WebSocket.MaxUnacked)
		}
		window = min(n, g.cfg.WebSocket.MaxUnacked)
	}
	ctx, done, err := g.streamContext(r)
	if err != nil {
		return err
	}
	defer done()
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	pats, anyOrigin := g.wsOriginPatterns()
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: pats, InsecureSkipVerify: anyOrigin})
	if err != nil {
		return nil // Accept has answered
	}
	conn.SetReadLimit(g.cfg.WebSocket.MaxMessageBytes)
	g.metrics.streams.WithLabelValues("websocket").Inc()
	defer g.metrics.streams.WithLabelValues("websocket").Dec()
	c := &wsConn{g: g, p: p, conn: conn, out: make(chan []byte, 256), slots: make(chan struct{}, window),
		ops:  make(chan struct{}, g.cfg.Limits.MaxWSInFlight),
		subs: map[string]*wsSub{}, pending: map[string]*pendingDelivery{}}
	c.ctx, c.cancel = context.WithCancel(ctx)
	writerDone := make(chan struct{})
	go c.writer(writerDone)
	c.readLoop()
	c.cancel()
	c.closeSubs()
	c.work.Wait()
	<-writerDone
	if g.closing.Load() {
		conn.Close(websocket.StatusGoingAway, "server shutting down")
	} else {
		conn.Close(websocket.StatusNormalClosure, "")
	}
	return nil
}

func (c *wsConn) writer(done chan struct{}) {
	defer close(done)
	for {
		select {
		case <-c.ctx.Done():
			return
		case b := <-c.out:
			wctx, cancel := context.WithTimeout(c.ctx, c.g.cfg.SSE.WriteTimeout)
			err := c.conn.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				c.cancel()
				return
			}
		}
	}
}

func (c *wsConn) send(m WSMessage) bool {
	b, err := json.Marshal(m)
	if err != nil {
		return false
	}
	select {
	case c.out <- b:
		return true
	case <-c.ctx.Done():
		return false
	}
}

func (c *wsConn) sendErr(id string, err error) {
	ae := c.g.classify(err)
	c.send(WSMessage{Type: "error", ID: id, Error: &errorDetail{Code: ae.Code, Message: ae.Message}})
}

func (c *wsConn) readLoop() {
	for {
		typ, b, err := c.conn.Read(c.ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			c.sendErr("", badRequest("binary frames are not supported; send JSON text frames"))
			continue
		}
		var req WSRequest
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.DisallowUnknownFields()
		if err := d.Decode(&req); err != nil {
			c.sendErr("", badRequest("message: %v; send {\"op\": subscribe|unsubscribe|ack|nack|publish, \"id\": ...}", err))
			continue
		}
		c.dispatch(&req)
	}
}

func (c *wsConn) dispatch(req *WSRequest) {
	switch req.Op {
	case "subscribe":
		if err := c.subscribe(req); err != nil {
			c.sendErr(req.ID, err)
		}
	case "unsubscribe":
		c.mu.Lock()
		s := c.subs[req.ID]
		delete(c.subs, req.ID)
		c.mu.Unlock()
		if s == nil {
			c.sendErr(req.ID, errorf(http.StatusNotFound, CodeNotFound, "no subscription %q on this connection", req.ID))
			return
		}
		c.stopSub(s)
		c.send(WSMessage{Type: "unsubscribed", ID: req.ID})
	case "ack", "nack":
		var verdict error
		if req.Op == "nack" {
			reason := req.Reason
			if reason == "" {
				reason = "nacked by the client"
			}
			verdict = errors.New(reason)
			if req.Permanent {
				verdict = herald.Permanent(verdict)
			}
		}
		missing := []string{}
		c.mu.Lock()
		for _, pos := range req.Positions {
			k := req.ID + "\x00" + pos
			if d := c.pending[k]; d != nil {
				delete(c.pending, k)
				d.result <- verdict
				outcome := herald.OutcomeOK
				if verdict != nil {
					outcome = herald.OutcomeError
				}
				c.g.metrics.delivered.WithLabelValues(d.msg.Topic, d.msg.Group, "ws", outcome).Inc()
			} else {
				missing = append(missing, pos)
			}
		}
		c.mu.Unlock()
		if len(missing) > 0 {
			c.sendErr(req.ID, errorf(http.StatusConflict, CodeInvalidRequest, "positions %s are not awaiting an ack on subscription %q", strings.Join(missing, ", "), req.ID))
		}
	case "publish":
		select {
		case c.ops <- struct{}{}:
		default:
			c.g.metrics.limited.WithLabelValues("ws_in_flight").Inc()
			c.sendErr(req.ID, errorf(http.StatusTooManyRequests, CodeTooManyRequests,
				"%d publishes are running on this connection, its limit (limits.max_ws_in_flight); wait for their answers", cap(c.ops)))
			return
		}
		c.work.Add(1)
		go func() {
			defer c.work.Done()
			defer func() { <-c.ops }()
			if err := c.publish(req); err != nil {
				c.sendErr(req.ID, err)
			}
		}()
	default:
		c.sendErr(req.ID, badRequest("op %q is not supported; use subscribe, unsubscribe, ack, nack or publish", req.Op))
	}
}

func (c *wsConn) publish(req *WSRequest) error {
	if req.Channel != "" {
		if !c.p.can(actPublish, "channel:"+req.Channel) {
			return errorf(http.StatusForbidden, CodeForbidden, "this API key may not publish on channel %q", req.Channel)
		}
		data := []byte(nil)
		if len(req.Data) > 0 {
			var s string
			if json.Unmarshal(req.Data, &s) == nil {
				data = []byte(s)
			} else {
				data = req.Data
			}
		}
		n, err := c.g.c.Broadcast(c.ctx, req.Channel, data)
		if err != nil {
			return err
		}
		c.g.metrics.channelMessages.WithLabelValues("published").Inc()
		c.send(WSMessage{Type: "broadcast", ID: req.ID, Receivers: &n})
		return nil
	}
	if err := herald.ValidateName("topic", req.Topic); err != nil {
		return err
	}
	if !c.p.can(actPublish, req.Topic) {
		return errorf(http.StatusForbidden, CodeForbidden, "this API key may not publish to topic %q", req.Topic)
	}
	raws := req.Events
	if len(req.Event) > 0 {
		raws = append(raws, req.Event)
	}
	if len(raws) == 0 || len(raws) > c.g.cfg.MaxBatch {
		return badRequest("publish takes 1-%d events in \"event\" or \"events\"", c.g.cfg.MaxBatch)
	}
	evs := make([]herald.Event, len(raws))
	for i, raw := range raws {
		ev, err := decodeEnvelope(raw)
		if err != nil {
			return badRequest("event %d: %v", i, err)
		}
		evs[i] = ev
	}
	start := time.Now()
	ps, err := c.g.c.PublishBatch(c.ctx, req.Topic, evs)
	c.g.metrics.observePublish(req.Topic, len(evs), ps, err, time.Since(start))
	if err != nil {
		return err
	}
	out := make([]PositionJSON, len(ps))
	for i, p := range ps {
		out[i] = PositionJSON{Position: p.String(), Partition: p.Partition, StreamID: p.ID, EventID: evs[i].ID, Duplicate: p.Duplicate, Degraded: p.Degraded}
	}
	c.send(WSMessage{Type: "published", ID: req.ID, Positions: out})
	return nil
}

func (c *wsConn) subscribe(req *WSRequest) error {
	if req.ID == "" {
		return badRequest("subscribe needs an id; acks and events name the subscription by it")
	}
	c.mu.Lock()
	_, dup := c.subs[req.ID]
	n := len(c.subs)
	c.mu.Unlock()
	if dup {
		return badRequest("subscription id %q is in use on this connection", req.ID)
	}
	if n >= c.g.cfg.Limits.MaxWSSubscriptions {
		c.g.metrics.limited.WithLabelValues("ws_subscriptions").Inc()
		return errorf(http.StatusTooManyRequests, CodeTooManySubscriptions,
			"this connection has %d subscriptions, its limit (limits.max_ws_subscriptions); unsubscribe first", n)
	}
	if req.Topic != "" {
		f, err := checkFormat(req.Format)
		if err != nil {
			return err
		}
		req.Format = f
	}
	sctx, cancel := context.WithCancel(c.ctx)
	s := &wsSub{cancel: cancel, done: make(chan struct{})}
	var err error
	switch {
	case req.Channel != "" || req.Pattern != "":
		err = c.subscribeChannel(sctx, req, s)
	case req.Topic != "" && req.Group != "":
		err = c.subscribeGroup(sctx, req, s)
	case req.Topic != "":
		err = c.subscribeTail(sctx, req, s)
	default:
		err = badRequest("subscribe needs a topic (with a group for acknowledged delivery), a channel or a pattern")
	}
	if err != nil {
		cancel()
		return err
	}
	c.mu.Lock()
	c.subs[req.ID] = s
	c.mu.Unlock()
	return nil
}

func (c *wsConn) subscribeChannel(ctx context.Context, req *WSRequest, s *wsSub) error {
	name, pattern := req.Channel, false
	if req.Pattern != "" {
		name, pattern = req.Pattern, true
	}
	if err := validChannel(name); err != nil {
		return err
	}
	if !c.p.can(actSubscribe, "channel:"+name) {
		return errorf(http.StatusForbidden, CodeForbidden, "this API key may not subscribe to channel %q", name)
	}
	sub, err := c.g.chans.join(ctx, name, pattern)
	if err != nil {
		return err
	}
	c.send(WSMessage{Type: "subscribed", ID: req.ID})
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		defer close(s.done)
		defer c.g.chans.leave(sub)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.ended:
				return
			case m := <-sub.ch:
				if pattern && !c.p.can(actSubscribe, "channel:"+m.Channel) {
					continue
				}
				cm := channelMessageJSON(m)
				c.g.metrics.channelMessages.WithLabelValues("delivered").Inc()
				if !c.send(WSMessage{Type: "message", ID: req.ID, Message: &cm}) {
					return
				}
			}
		}
	}()
	return nil
}

func (c *wsConn) subscribeTail(ctx context.Context, req *WSRequest, s *wsSub) error {
	if err := herald.ValidateName("topic", req.Topic); err != nil {
		return err
	}
	if !c.p.can(actSubscribe, req.Topic) {
		return errorf(http.StatusForbidden, CodeForbidden, "this API key may not subscribe to topic %q", req.Topic)
	}
	start, err := parseTailStart(req.From, "")
	if err != nil {
		return err
	}
	c.work.Add(1)
	go func() {
		defer c.work.Done()
		defer close(s.done)
		err := c.g.tail(ctx, req.Topic, start, nil, nil, func(fe *feedEvent) error {
			c.g.metrics.observeDelivery(&fe.msg, "ws")
			if !c.send(WSMessage{Type: "event", ID: req.ID, Event: fe.payload(req.Format)}) {
				return context.Canceled
			}
			return nil
		}, nil, func() error {
			c.send(WSMessage{Type: "subscribed", ID: req.ID}) // joined: what comes next is delivered
			return nil
		})
		if err != nil && ctx.Err() == nil {
			c.sendErr(req.ID, err)
		}
	}()
	return nil
}

func (c *wsConn) stopSub(s *wsSub) {
	s.cancel()
	if s.member != nil {
		s.member.stop() // unacknowledged events are handed back to the group
	}
	<-s.done
}

func (c *wsConn) closeSubs() {
	c.mu.Lock()
	subs := c.subs
	c.subs = map[string]*wsSub{}
	c.mu.Unlock()
	for _, s := range subs {
		c.stopSub(s)
	}
}

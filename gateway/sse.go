package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldbus/herald"
)

// sseStream writes Server-Sent Events to one response. Events are queued
// in a small buffer and written together by flush (one write, one flush),
// so a stream that fell behind catches up in few system calls.
//
// A live tail over HTTP/1.x takes the connection over (hijack) and writes
// to it directly, with the body delimited by the connection's close: the
// server's per-connection buffers and background reader are freed, which
// makes an idle tail cost a goroutine and a few hundred bytes. A client
// that goes away is noticed at the next write (an event or a heartbeat).
type sseStream struct {
	g    *Gateway
	w    http.ResponseWriter
	rc   *http.ResponseController
	conn net.Conn    // hijacked: written directly
	rw   *respWriter // counts a hijacked stream's bytes for the access log
	mu   sync.Mutex
	buf  []byte // queued frames
	// deadline is the write deadline set on conn; it is moved forward
	// when less than the write timeout minus a second is left, not on
	// every write (each move costs a timer update).
	deadline time.Time
	// failed is the first write error: after it the stream may end in the
	// middle of a frame, so nothing more is written.
	failed error
}

// startSSE sends the stream's headers. The server's read and write
// deadlines are cleared (a stream outlives them); each write gets its own.
// hijack asks for the connection to be taken over (see sseStream).
func (g *Gateway) startSSE(w http.ResponseWriter, r *http.Request, extra http.Header, hijack bool) (*sseStream, error) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	for k, v := range extra {
		h[k] = v
	}
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s := &sseStream{g: g, w: w, rc: rc}
	if hijack && r.ProtoMajor == 1 && r.TLS == nil {
		if conn, brw, err := rc.Hijack(); err == nil {
			_ = conn.SetDeadline(time.Time{})
			if rw, ok := w.(*respWriter); ok {
				rw.status, rw.wrote = http.StatusOK, true
				s.rw = rw
			}
			s.conn = conn
			hb := []byte("HTTP/1.1 200 OK\r\nConnection: close\r\n")
			var hw headerWriter
			_ = h.Write(&hw)
			hb = append(hb, hw.b...)
			hb = append(hb, "\r\n"...)
			brw.Reader.Reset(nil) // drop the server's buffers
			brw.Writer.Reset(nil)
			hb = append(hb, "retry: 2000\n\n"...)
			s.buf = hb
			if err := s.flush(); err != nil {
				conn.Close()
				return nil, err
			}
			return s, nil
		}
	}
	w.WriteHeader(http.StatusOK)
	s.queueRaw("retry: 2000\n\n")
	if err := s.flush(); err != nil {
		return nil, err
	}
	return s, nil
}

// headerWriter collects http.Header.Write's output.
type headerWriter struct{ b []byte }

func (h *headerWriter) Write(p []byte) (int, error) { h.b = append(h.b, p...); return len(p), nil }

// close closes a taken-over connection (the server closes the others).
func (s *sseStream) close() {
	if s.conn != nil {
		s.conn.Close()
	}
}

func (s *sseStream) queueRaw(text string) {
	s.mu.Lock()
	s.buf = append(s.buf, text...)
	s.mu.Unlock()
}

// queue adds one event to the buffer; id and name may be empty. data must
// hold no newline.
func (s *sseStream) queue(id, name string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id != "" {
		s.buf = append(s.buf, "id: "...)
		s.buf = append(s.buf, id...)
		s.buf = append(s.buf, '\n')
	}
	if name != "" {
		s.buf = append(s.buf, "event: "...)
		s.buf = append(s.buf, name...)
		s.buf = append(s.buf, '\n')
	}
	s.buf = append(s.buf, "data: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
}

// flush writes what is queued, within the write timeout.
func (s *sseStream) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	if len(s.buf) == 0 {
		return nil
	}
	var err error
	now := time.Now()
	deadline := now.Add(s.g.cfg.SSE.WriteTimeout)
	if s.conn != nil {
		if s.deadline.Sub(now) < s.g.cfg.SSE.WriteTimeout-time.Second || s.g.cfg.SSE.WriteTimeout <= 2*time.Second {
			_ = s.conn.SetWriteDeadline(deadline)
			s.deadline = deadline
		}
		var n int
		n, err = s.conn.Write(s.buf)
		if s.rw != nil {
			s.rw.bytes += int64(n)
		}
	} else {
		_ = s.rc.SetWriteDeadline(deadline)
		if _, err = s.w.Write(s.buf); err == nil {
			err = s.rc.Flush()
		}
	}
	if cap(s.buf) > 16<<10 {
		s.buf = nil // a burst's buffer is not kept
	} else {
		s.buf = s.buf[:0]
	}
	if err != nil {
		s.failed = err
		if s.conn != nil {
			s.conn.Close() // the client sees the stream end and reconnects with Last-Event-ID
		}
	}
	return err
}

func (s *sseStream) write(text string) error {
	s.queueRaw(text)
	return s.flush()
}

// event writes one event; id and name may be empty. data must hold no newline.
func (s *sseStream) event(id, name string, data []byte) error {
	s.queue(id, name, data)
	return s.flush()
}

func (s *sseStream) jsonEvent(id, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.event(id, name, b)
}

// heartbeat writes a comment line, which keeps proxies from closing an idle stream.
func (s *sseStream) heartbeat() error { return s.write(": ping\n\n") }

// streamContext ends when the client goes away or the gateway shuts down.
func (g *Gateway) streamContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	if g.closing.Load() {
		return nil, nil, errorf(http.StatusServiceUnavailable, CodeShuttingDown, "the server is shutting down; reconnect in a moment")
	}
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(g.streamCtx, cancel)
	g.streams.Add(1)
	return ctx, func() { stop(); cancel(); g.streams.Done() }, nil
}

func wantsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "application/json") && !strings.Contains(a, "text/event-stream")
}

// handleTopicEvents serves GET /v1/topics/{topic}/events: a group stream
// with ?group=, a live tail without, or (Accept: application/json) a page
// of stored events.
func (g *Gateway) handleTopicEvents(w http.ResponseWriter, r *http.Request, p *principal) error {
	topic := r.PathValue("topic")
	if err := herald.ValidateName("topic", topic); err != nil {
		return err
	}
	q := r.URL.Query()
	if grp := q.Get("group"); grp != "" && !p.canGroup(topic, grp) {
		return forbidGroup(p, topic, grp)
	}
	if wantsJSON(r) {
		return g.listEvents(w, r, topic)
	}
	if q.Get("group") != "" {
		return g.groupStream(w, r, p, topic, q.Get("group"))
	}
	return g.tailStream(w, r, topic)
}

// eventPayload encodes a delivered message for SSE and WebSocket in format
// (herald or cloudevents).
func eventPayload(m *herald.Message, format string) []byte {
	if format == "cloudevents" {
		return encodeCloudEventMessage(m)
	}
	b, _ := json.Marshal(messageEnvelope(m))
	return b
}

func parseFormat(r *http.Request) (string, error) {
	return checkFormat(r.URL.Query().Get("format"))
}

// checkFormat validates an output format: herald (the default, "") or cloudevents.
func checkFormat(f string) (string, error) {
	switch f {
	case "", "herald":
		return "herald", nil
	case "cloudevents":
		return f, nil
	}
	return "", badRequest("format %q is not supported; use herald (the default) or cloudevents", f)
}

// tailStream is a live tail without a consumer group: nothing is
// acknowledged; a reconnect with Last-Event-ID resumes after that position.
func (g *Gateway) tailStream(w http.ResponseWriter, r *http.Request, topic string) error {
	format, err := parseFormat(r)
	if err != nil {
		return err
	}
	start, err := parseTailStart(r.URL.Query().Get("from"), r.Header.Get("Last-Event-ID"))
	if err != nil {
		return err
	}
	ctx, done, err := g.streamContext(r)
	if err != nil {
		return err
	}
	defer done()
	beat := time.NewTicker(g.cfg.SSE.Heartbeat)
	defer beat.Stop()
	// The topic's series are made at its first event: a tail of a topic
	// that does not exist (yet) adds none, so requests for made-up names
	// cannot grow /metrics.
	var sent prometheus.Counter
	var latency prometheus.Observer
	var s *sseStream
	// The stream starts (headers sent) once the tail has joined the
	// topic's feed: an event published after the client saw the headers
	// is in the stream.
	ready := func() error {
		var err error
		if s, err = g.startSSE(w, r, nil, true); err != nil {
			return err
		}
		g.metrics.streams.WithLabelValues("sse_tail").Inc()
		return nil
	}
	err = g.tail(ctx, topic, start, beat.C, func() error { return s.heartbeat() }, func(fe *feedEvent) error {
		if sent == nil {
			sent = g.metrics.sent.WithLabelValues(topic, "", "sse")
			latency = g.metrics.deliveryLatency.WithLabelValues(topic, "sse")
		}
		sent.Inc()
		traceDelivery(g.c, &fe.msg, "sse") // tracing.go: nothing when tracing is off
		if !fe.msg.Time.IsZero() {
			latency.Observe(time.Since(fe.msg.Time).Seconds())
		}
		s.queue(fe.pos, "", fe.payload(format))
		return nil
	}, func() error { return s.flush() }, ready)
	if s == nil {
		return err // not started: the error is the answer
	}
	defer s.close()
	defer g.metrics.streams.WithLabelValues("sse_tail").Dec()
	if err != nil && ctx.Err() == nil {
		ae := g.classify(err)
		_ = s.jsonEvent("", "error", errorDetail{Code: ae.Code, Message: ae.Message})
	}
	return nil
}

func (g *Gateway) listEvents(w http.ResponseWriter, r *http.Request, topic string) error {
	q, err := parseQuery(r)
	if err != nil {
		return err
	}
	es, err := g.c.Events(r.Context(), topic, q)
	if err != nil {
		return err
	}
	out := make([]EventJSON, len(es))
	for i := range es {
		m := &herald.Message{Event: es[i].Event, Topic: topic, Partition: es[i].Partition, Position: es[i].Position}
		out[i] = messageEnvelope(m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "events": out})
	return nil
}

// parseQuery reads partition, from, to, limit, group and ids (comma-separated positions).
func parseQuery(r *http.Request) (herald.Query, error) {
	v := r.URL.Query()
	q := herald.Query{From: v.Get("from"), To: v.Get("to"), Group: v.Get("group")}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			return q, badRequest("limit %q: use a number from 1 to 10000", l)
		}
		q.Limit = n
	}
	for _, ps := range v["partition"] {
		for _, p := range strings.Split(ps, ",") {
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 {
				return q, badRequest("partition %q is not a partition number", p)
			}
			q.Partitions = append(q.Partitions, n)
		}
	}
	for _, ids := range v["ids"] {
		for _, id := range strings.Split(ids, ",") {
			if id != "" {
				q.IDs = append(q.IDs, id)
			}
		}
	}
	return q, nil
}

// handleChannelStream serves GET /v1/channels/{channel}: live messages as
// SSE; ?pattern=true subscribes to a glob pattern instead. Every channel
// stream of the process shares one Pub/Sub connection (chanHub).
func (g *Gateway) handleChannelStream(w http.ResponseWriter, r *http.Request, p *principal) error {
	ch := r.PathValue("channel")
	if err := validChannel(ch); err != nil {
		return err
	}
	pattern := r.URL.Query().Get("pattern") == "true" || r.URL.Query().Get("pattern") == "1"
	ctx, done, err := g.streamContext(r)
	if err != nil {
		return err
	}
	defer done()
	sub, err := g.chans.join(ctx, ch, pattern)
	if err != nil {
		return err
	}
	defer g.chans.leave(sub)
	s, err := g.startSSE(w, r, nil, false)
	if err != nil {
		return nil
	}
	g.metrics.streams.WithLabelValues("sse_channel").Inc()
	defer g.metrics.streams.WithLabelValues("sse_channel").Dec()
	beat := time.NewTicker(g.cfg.SSE.Heartbeat)
	defer beat.Stop()
	var told int64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.ended:
			return nil
		case <-beat.C:
			if s.heartbeat() != nil {
				return nil
			}
		case gp := <-sub.gaps:
			msg := ""
			if gp.Err != nil {
				msg = gp.Err.Error()
			}
			_ = s.jsonEvent("", "gap", map[string]any{"start": gp.Start, "end": gp.End, "error": msg})
		case m := <-sub.ch:
			// A pattern may match channels the key may not read.
			if pattern && !p.can(actSubscribe, "channel:"+m.Channel) {
				continue
			}
			g.metrics.channelMessages.WithLabelValues("delivered").Inc()
			if d := sub.dropped.Load(); d > told {
				_ = s.jsonEvent("", "lagged", map[string]int64{"dropped": d - told})
				told = d
			}
			if s.jsonEvent("", "", channelMessageJSON(m)) != nil {
				return nil
			}
		}
	}
}

// ChannelMessageJSON is a live channel message as SSE and WebSocket carry it.
type ChannelMessageJSON struct {
	Channel    string          `json:"channel"`
	Pattern    string          `json:"pattern,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	DataBase64 string          `json:"data_base64,omitempty"`
}

func channelMessageJSON(m herald.ChannelMessage) ChannelMessageJSON {
	var e EventJSON
	encodeData(&e, m.Data, "")
	return ChannelMessageJSON{Channel: m.Channel, Pattern: m.Pattern, Data: e.Data, DataBase64: e.DataBase64}
}

// handleMonitor serves GET /v1/monitor: every event and channel message as
// it flows (no payloads), filtered by ?topics= and ?channels= globs and by
// the key's admin grants. Every monitor stream of the process shares one
// Monitor (monHub).
func (g *Gateway) handleMonitor(w http.ResponseWriter, r *http.Request, p *principal) error {
	q := r.URL.Query()
	f := herald.MonitorFilter{Topics: q.Get("topics"), Channels: q.Get("channels"),
		SkipTopics: q.Get("skip_topics") == "true", SkipChannels: q.Get("skip_channels") == "true"}
	ctx, done, err := g.streamContext(r)
	if err != nil {
		return err
	}
	defer done()
	sub, err := g.monitors.join(ctx, f)
	if err != nil {
		return err
	}
	defer g.monitors.leave(sub)
	s, err := g.startSSE(w, r, nil, false)
	if err != nil {
		return nil
	}
	g.metrics.streams.WithLabelValues("monitor").Inc()
	defer g.metrics.streams.WithLabelValues("monitor").Dec()
	beat := time.NewTicker(g.cfg.SSE.Heartbeat)
	defer beat.Stop()
	var told int64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.ended:
			return nil
		case <-beat.C:
			if s.heartbeat() != nil {
				return nil
			}
		case ev := <-sub.ch:
			if ev.Kind == "event" && !p.can(actAdmin, ev.Topic) || ev.Kind == "message" && !p.can(actAdmin, "channel:"+ev.Channel) {
				continue
			}
			if d := sub.dropped.Load(); d > told {
				_ = s.jsonEvent("", "lagged", map[string]int64{"dropped": d - told})
				told = d
			}
			if s.jsonEvent("", "", ev) != nil {
				return nil
			}
		}
	}
}

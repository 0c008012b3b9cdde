package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldbus/herald"
)

// sseStream writes Server-Sent Events to one response.
type sseStream struct {
	g  *Gateway
	w  http.ResponseWriter
	rc *http.ResponseController
	mu sync.Mutex
}

// startSSE sends the stream's headers. The server's read and write
// deadlines are cleared (a stream outlives them); each write gets its own.
func (g *Gateway) startSSE(w http.ResponseWriter, extra http.Header) (*sseStream, error) {
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
	w.WriteHeader(http.StatusOK)
	s := &sseStream{g: g, w: w, rc: rc}
	if err := s.write("retry: 2000\n\n"); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sseStream) write(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.g.cfg.SSE.WriteTimeout))
	if _, err := s.w.Write([]byte(text)); err != nil {
		return err
	}
	return s.rc.Flush()
}

// event writes one event; id and name may be empty. data must hold no newline.
func (s *sseStream) event(id, name string, data []byte) error {
	var b strings.Builder
	b.Grow(len(data) + len(id) + len(name) + 24)
	if id != "" {
		b.WriteString("id: ")
		b.WriteString(id)
		b.WriteByte('\n')
	}
	if name != "" {
		b.WriteString("event: ")
		b.WriteString(name)
		b.WriteByte('\n')
	}
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	return s.write(b.String())
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

// eventFormat encodes a delivered message for SSE and WebSocket.
func eventPayload(m *herald.Message, format string) []byte {
	if format == "cloudevents" {
		return EncodeCloudEvent(&m.Event)
	}
	b, _ := json.Marshal(messageEnvelope(m))
	return b
}

func parseFormat(r *http.Request) (string, error) {
	f := r.URL.Query().Get("format")
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
	s, err := g.startSSE(w, nil)
	if err != nil {
		return nil
	}
	g.metrics.streams.WithLabelValues("sse_tail").Inc()
	defer g.metrics.streams.WithLabelValues("sse_tail").Dec()
	beat := time.NewTicker(g.cfg.SSE.Heartbeat)
	defer beat.Stop()
	sent := g.metrics.delivered.WithLabelValues(topic, "", "sse", "sent")
	latency := g.metrics.deliveryLatency.WithLabelValues(topic, "sse")
	err = g.tail(ctx, topic, start, beat.C, s.heartbeat, func(fe *feedEvent) error {
		sent.Inc()
		if !fe.msg.Time.IsZero() {
			latency.Observe(time.Since(fe.msg.Time).Seconds())
		}
		return s.event(fe.pos, "", fe.payload(format))
	})
	if err != nil && ctx.Err() == nil {
		ae := g.classify(err)
		s.jsonEvent("", "error", errorDetail{Code: ae.Code, Message: ae.Message})
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
// SSE; ?pattern=true subscribes to a glob pattern instead.
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
	gaps := make(chan herald.Gap, 16)
	lc := herald.ListenConfig{OnGap: func(gp herald.Gap) {
		select {
		case gaps <- gp:
		default:
		}
	}}
	if pattern {
		lc.Patterns = []string{ch}
	} else {
		lc.Channels = []string{ch}
	}
	l, err := g.c.Listen(ctx, lc)
	if err != nil {
		return err
	}
	defer l.Close()
	s, err := g.startSSE(w, nil)
	if err != nil {
		return nil
	}
	g.metrics.streams.WithLabelValues("sse_channel").Inc()
	defer g.metrics.streams.WithLabelValues("sse_channel").Dec()
	beat := time.NewTicker(g.cfg.SSE.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat.C:
			if s.heartbeat() != nil {
				return nil
			}
		case gp := <-gaps:
			msg := ""
			if gp.Err != nil {
				msg = gp.Err.Error()
			}
			s.jsonEvent("", "gap", map[string]any{"start": gp.Start, "end": gp.End, "error": msg})
		case m, ok := <-l.Messages():
			if !ok {
				return nil
			}
			if m.Kind != "message" && m.Kind != "pmessage" {
				continue
			}
			// A pattern may match channels the key may not read.
			if pattern && !p.can(actSubscribe, "channel:"+m.Channel) {
				continue
			}
			g.metrics.channelMessages.WithLabelValues("delivered").Inc()
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
// the key's admin grants.
func (g *Gateway) handleMonitor(w http.ResponseWriter, r *http.Request, p *principal) error {
	q := r.URL.Query()
	f := herald.MonitorFilter{Topics: q.Get("topics"), Channels: q.Get("channels"),
		SkipTopics: q.Get("skip_topics") == "true", SkipChannels: q.Get("skip_channels") == "true"}
	ctx, done, err := g.streamContext(r)
	if err != nil {
		return err
	}
	defer done()
	events, err := g.c.Monitor(ctx, f)
	if err != nil {
		return err
	}
	s, err := g.startSSE(w, nil)
	if err != nil {
		return nil
	}
	g.metrics.streams.WithLabelValues("monitor").Inc()
	defer g.metrics.streams.WithLabelValues("monitor").Dec()
	beat := time.NewTicker(g.cfg.SSE.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat.C:
			if s.heartbeat() != nil {
				return nil
			}
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if ev.Kind == "event" && !p.can(actAdmin, ev.Topic) || ev.Kind == "message" && !p.can(actAdmin, "channel:"+ev.Channel) {
				continue
			}
			if s.jsonEvent("", "", ev) != nil {
				return nil
			}
		}
	}
}

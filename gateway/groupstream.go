package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldbus/herald"
)

// groupStream serves a consumer group over SSE (see session).
func (g *Gateway) groupStream(w http.ResponseWriter, r *http.Request, p *principal, topic, group string) error {
	q := r.URL.Query()
	if err := herald.ValidateName("group", group); err != nil {
		return err
	}
	format, err := parseFormat(r)
	if err != nil {
		return err
	}
	o := sessionOptions{window: g.cfg.SSE.Window}
	if v := q.Get("window"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxSSEWindow {
			return badRequest("window %q: use a number from 1 to %d", v, MaxSSEWindow)
		}
		o.window = n
	}
	switch a := q.Get("ack"); a {
	case "", "client":
	case "auto":
		o.autoAck = true
	default:
		return badRequest("ack %q is not supported; use client (the default: confirm with Last-Event-ID or the ack endpoint) or auto", a)
	}
	switch f := q.Get("from"); f {
	case "", "now":
	case "beginning":
		o.start = herald.StartBeginning
	default:
		return badRequest("from %q: a new group starts at now (the default) or beginning", f)
	}
	o.filter = q.Get("filter")
	if v := q.Get("max_attempts"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badRequest("max_attempts %q: use a positive number", v)
		}
		o.maxAttempts = n
	}
	lastID := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if lastID == "" {
		lastID = q.Get("last_event_id")
	}
	if lastID != "" {
		if _, err := herald.ParsePosition(lastID); err != nil {
			return badRequest("Last-Event-ID %q is not a position; use <partition>/<stream id> as the stream's ids are", lastID)
		}
	}
	client := q.Get("client")
	var s *session
	if client == "" && lastID != "" {
		s = g.sessions.findByLastID(p.keyName(), topic, group, lastID)
		if s != nil {
			client = s.client
		}
	}
	if client == "" {
		client = newClientID()
	}
	if len(client) > 150 {
		return badRequest("client id is %d characters long; use at most 150", len(client))
	}
	if err := herald.ValidateName("client", client); err != nil {
		return err
	}
	ctx, done, err := g.streamContext(r)
	if err != nil {
		return err
	}
	defer done()
	var gen uint64
	var kick chan struct{}
	for try := 0; ; try++ {
		if s == nil {
			if s, err = g.sessions.open(ctx, p.keyName(), g.sessionQuota(r, p), topic, group, client, o); err != nil {
				return err
			}
		}
		var ok bool
		if gen, kick, ok = s.attach(lastID); ok {
			break
		}
		if try > 3 {
			return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the session of client %q is stopping; reconnect in a moment", client)
		}
		s = nil // it was stopping (and is gone): open a new one
	}
	defer s.detach(gen)
	hdr := http.Header{}
	hdr.Set("Herald-Client", client)
	hdr.Set("Herald-Consumer", s.feed.consumer)
	st, err := g.startSSE(w, r, hdr, false)
	if err != nil {
		return nil
	}
	g.metrics.streams.WithLabelValues("sse_group").Inc()
	defer g.metrics.streams.WithLabelValues("sse_group").Dec()
	info, _ := json.Marshal(map[string]any{"client": client, "consumer": s.feed.consumer, "group": group, "topic": topic,
		"window": s.window, "ack": map[bool]string{false: "client", true: "auto"}[s.autoAck]})
	if st.event("", "session", info) != nil {
		return nil
	}
	beat := time.NewTicker(g.cfg.SSE.Heartbeat)
	defer beat.Stop()
	for {
		batch, full, ok := s.next(gen)
		if !ok {
			return nil
		}
		for _, d := range batch {
			g.metrics.observeDelivery(d.msg, "sse")
			if st.event(d.pos, "", eventPayload(d.msg, format)) != nil {
				return nil // unconfirmed: sent again on the next connection
			}
			if s.autoAck {
				s.confirmUpTo(d.pos)
			}
		}
		if exp := s.takeExpired(); len(exp) > 0 {
			if st.jsonEvent("", "ack_timeout", map[string]any{"positions": exp, "ack_timeout": g.cfg.AckTimeout.String(),
				"message": "these events were not confirmed within ack_timeout and went back to the group for redelivery (perhaps to another client); " +
					"confirming them now settles nothing: confirm each event sooner with POST /v1/topics/" + topic + "/groups/" + group + "/ack, or use ?ack=auto"}) != nil {
				return nil
			}
		}
		if full {
			g.metrics.windowFull.Inc()
			if st.jsonEvent("", "window_full", map[string]any{"unconfirmed": s.unconfirmed(), "window": s.window,
				"message": "no more events until some are confirmed: POST /v1/topics/" + topic + "/groups/" + group +
					"/ack {\"client\": \"" + client + "\", \"up_to\": LAST_ID}, reconnect with Last-Event-ID, or use ?ack=auto"}) != nil {
				return nil
			}
		}
		select {
		case <-s.wake:
		case <-kick:
			return nil
		case <-ctx.Done():
			return nil
		case <-beat.C:
			if st.heartbeat() != nil {
				return nil
			}
		}
	}
}

// AckRequest is the body of POST /v1/topics/{topic}/groups/{group}/ack.
type AckRequest struct {
	// Client is the session's client id (the Herald-Client header and the
	// "session" event of the stream).
	Client string `json:"client"`
	// UpTo confirms every event sent before it, and it.
	UpTo string `json:"up_to,omitempty"`
	// Positions confirms (or with Nack, fails) these events.
	Positions []string `json:"positions,omitempty"`
	// Nack fails Positions: they are retried with backoff, or dead-lettered
	// at once with Permanent.
	Nack      bool   `json:"nack,omitempty"`
	Permanent bool   `json:"permanent,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

func (g *Gateway) handleAck(w http.ResponseWriter, r *http.Request, p *principal) error {
	topic, group := r.PathValue("topic"), r.PathValue("group")
	var req AckRequest
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		if tooLarge(err) {
			return err
		}
		return badRequest("ack body: %v; send {\"client\": ID, \"up_to\": POSITION} or {\"client\": ID, \"positions\": [...]}", err)
	}
	if req.Client == "" || (req.UpTo == "" && len(req.Positions) == 0) {
		return badRequest("send {\"client\": ID, \"up_to\": POSITION} or {\"client\": ID, \"positions\": [...]}; the client id is in the stream's Herald-Client header")
	}
	if req.Nack && req.UpTo != "" {
		return badRequest("nack takes positions, not up_to")
	}
	s := g.sessions.get(topic, group, req.Client)
	if s == nil {
		return errorf(http.StatusNotFound, CodeSessionNotFound,
			"no session of client %q in group %q of topic %q (it expired or the server restarted); reconnect the stream with Last-Event-ID", req.Client, group, topic)
	}
	if s.owner != p.keyName() {
		return errSessionOwner(req.Client)
	}
	n := 0
	if req.UpTo != "" {
		k, ok := s.confirmUpTo(req.UpTo)
		if !ok {
			return errorf(http.StatusConflict, CodeInvalidRequest, "position %q is not among the session's unconfirmed events (already confirmed, or never sent to this client)", req.UpTo)
		}
		n += k
	}
	if len(req.Positions) > 0 {
		var verdict error
		if req.Nack {
			reason := req.Reason
			if reason == "" {
				reason = "nacked by the client"
			}
			verdict = errors.New(reason)
			if req.Permanent {
				verdict = herald.Permanent(verdict)
			}
		}
		n += s.settle(req.Positions, verdict)
	}
	writeJSON(w, http.StatusOK, map[string]int{"settled": n})
	return nil
}

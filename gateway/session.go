package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldbus/herald"
)

// A group session is one client of a consumer group over SSE. It owns a
// subscription whose consumer name is derived from the client id
// ("sse-<client>"), so the client keeps its place across reconnects, and
// its handler holds each event until the client confirms it:
//
//   - every event sent on the stream is remembered, in the order sent;
//   - reconnecting with Last-Event-ID X confirms (acknowledges) every
//     remembered event up to and including X, and sends the rest again, in
//     the same order, before anything new: the stream resumes exactly
//     after X, with no gap;
//   - POST /v1/topics/{topic}/groups/{group}/ack confirms while connected
//     ({"client", "up_to"} or {"client", "positions"}) or nacks (retry with
//     backoff, or dead-letter with "permanent");
//   - ?ack=auto confirms each event once it is written to the connection
//     (at-most-once towards a client that dies right after);
//   - at most ?window= events are unconfirmed at once: the stream waits.
//
// A session outlives its connection by Config.SSE.ResumeWindow; after that,
// or at shutdown, its unconfirmed events are handed back to the group (they
// stay pending for the consumer "sse-<client>" and are redelivered to it
// first when it returns, or taken over by another consumer of the group).
type session struct {
	st                   *sessionStore
	key                  string
	owner                string // name of the API key that created it ("" without keys)
	topic, group, client string
	consumer             string
	sub                  *herald.Subscription
	autoAck              bool

	mu      sync.Mutex
	resend  []*pendingDelivery // sent on an earlier connection, unconfirmed: sent first, in the same order
	queue   []*pendingDelivery // from the handler, not yet sent
	arrived time.Time          // when the handler last queued an event
	sent    []*pendingDelivery // sent, not yet confirmed, in the order sent
	wake    chan struct{}
	gen     uint64        // generation of the attached connection; 0 when detached
	kick    chan struct{} // closed to make the attached connection leave
	expiry  *time.Timer
	stopped bool
}

// pendingDelivery is an event held by the session's handler until confirmed.
type pendingDelivery struct {
	msg    *herald.Message
	pos    string
	result chan error // nil: acknowledge; an error: retry or dead-letter
}

type sessionStore struct {
	g      *Gateway
	mu     sync.Mutex
	byKey  map[string]*session
	wg     sync.WaitGroup
	closed bool
}

func newSessionStore(g *Gateway) *sessionStore {
	return &sessionStore{g: g, byKey: map[string]*session{}}
}

func sessionKey(topic, group, client string) string { return topic + "\x00" + group + "\x00" + client }

func (st *sessionStore) get(topic, group, client string) *session {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.byKey[sessionKey(topic, group, client)]
}

// findByLastID finds the session of topic and group that sent lastID and
// has no connection (an EventSource reconnecting without ?client=).
func (st *sessionStore) findByLastID(owner, topic, group, lastID string) *session {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, s := range st.byKey {
		if s.topic != topic || s.group != group || s.owner != owner {
			continue
		}
		s.mu.Lock()
		found := false
		if s.gen == 0 && !s.stopped {
			for _, d := range s.sent {
				if d.pos == lastID {
					found = true
					break
				}
			}
		}
		s.mu.Unlock()
		if found {
			return s
		}
	}
	return nil
}

// open returns the session of the client, creating it (and its
// subscription) when there is none.
func (st *sessionStore) open(ctx context.Context, owner, topic, group, client string, window int, autoAck bool, opts []herald.SubscribeOption) (*session, error) {
	key := sessionKey(topic, group, client)
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil, errorf(http.StatusServiceUnavailable, CodeShuttingDown, "the server is shutting down; reconnect in a moment")
	}
	if s := st.byKey[key]; s != nil {
		st.mu.Unlock()
		if s.owner != owner {
			return nil, errSessionOwner(client)
		}
		return s, nil
	}
	if len(st.byKey) >= st.g.cfg.Limits.MaxSessions {
		st.mu.Unlock()
		st.g.metrics.limited.WithLabelValues("sessions").Inc()
		return nil, errorf(http.StatusServiceUnavailable, CodeTooManyConnections,
			"the server holds %d group sessions, its limit (limits.max_sessions); try again later", st.g.cfg.Limits.MaxSessions)
	}
	s := &session{st: st, key: key, owner: owner, topic: topic, group: group, client: client, consumer: "sse-" + client,
		autoAck: autoAck, wake: make(chan struct{}, 1)}
	st.byKey[key] = s
	st.wg.Add(1)
	st.mu.Unlock()
	opts = append(opts, herald.Consumer(s.consumer), herald.Concurrency(window), herald.MaxInFlight(window))
	sub, err := st.g.c.Subscribe(context.Background(), topic, group, herald.HandlerFunc(s.handle), opts...)
	if err != nil {
		st.mu.Lock()
		delete(st.byKey, key)
		st.mu.Unlock()
		st.wg.Done()
		return nil, err
	}
	s.mu.Lock()
	s.sub = sub
	s.mu.Unlock()
	st.g.metrics.subs.add(sub, subLabels{topic: topic, group: group, via: "sse"})
	go func() {
		<-sub.Done()
		st.g.metrics.subs.remove(sub)
		st.mu.Lock()
		if st.byKey[key] == s {
			delete(st.byKey, key)
		}
		st.mu.Unlock()
		st.wg.Done()
	}()
	return s, nil
}

// closeAll stops every session (shutdown).
func (st *sessionStore) closeAll() {
	st.mu.Lock()
	st.closed = true
	ss := make([]*session, 0, len(st.byKey))
	for _, s := range st.byKey {
		ss = append(ss, s)
	}
	st.mu.Unlock()
	for _, s := range ss {
		s.stop()
	}
}

func (st *sessionStore) wait() { st.wg.Wait() }

// handle is the subscription's handler: it queues the event for the
// connection and waits for the client's verdict.
func (s *session) handle(ctx context.Context, m *herald.Message) error {
	d := &pendingDelivery{msg: m, pos: m.Pos().String(), result: make(chan error, 1)}
	s.mu.Lock()
	s.queue = append(s.queue, d)
	s.arrived = time.Now()
	s.mu.Unlock()
	s.signal()
	select {
	case err := <-d.result:
		return err
	case <-ctx.Done():
		select {
		case err := <-d.result: // a verdict that raced the stop still counts
			return err
		default:
		}
		return ctx.Err() // handed back unhandled
	}
}

func (s *session) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// attach makes a connection the session's current one. lastID confirms
// every sent event up to it; the other sent events are queued again.
func (s *session) attach(lastID string) (uint64, chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return 0, nil, false
	}
	if s.gen != 0 {
		close(s.kick) // a newer connection takes over
	}
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	s.gen++
	s.kick = make(chan struct{})
	if lastID != "" {
		for i := len(s.sent) - 1; i >= 0; i-- {
			if s.sent[i].pos == lastID {
				s.confirmLocked(i + 1)
				break
			}
		}
	}
	s.resend = append(s.sent, s.resend...)
	s.sent = nil
	return s.gen, s.kick, true
}

// confirmLocked acknowledges the first n sent events.
func (s *session) confirmLocked(n int) {
	for _, d := range s.sent[:n] {
		d.result <- nil
		s.st.g.metrics.delivered.WithLabelValues(s.topic, s.group, "sse", "acked").Inc()
	}
	s.sent = append(s.sent[:0:0], s.sent[n:]...)
}

// detach ends a connection's hold; the session expires after the resume
// window unless a connection attaches again.
func (s *session) detach(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || s.stopped {
		return
	}
	s.gen = 0
	s.expiry = time.AfterFunc(s.st.g.cfg.SSE.ResumeWindow, s.stop)
}

// stop ends the session: unconfirmed events are handed back to the group.
func (s *session) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	if s.gen != 0 {
		close(s.kick)
		s.gen = 0
	}
	sub := s.sub
	released := len(s.sent) + len(s.queue) + len(s.resend)
	s.mu.Unlock()
	if released > 0 {
		s.st.g.metrics.delivered.WithLabelValues(s.topic, s.group, "sse", "released").Add(float64(released))
	}
	if sub != nil {
		sub.Stop()
	}
}

// settleWindow is how long the stream waits for the handlers of one read
// batch to queue their events (they run concurrently), so that it can send
// them in stream order.
const settleWindow = 300 * time.Microsecond

// next takes the queued events for connection gen, marking them sent:
// first those to send again, in their order, then the new ones in stream
// order (by position time, partition and sequence).
func (s *session) next(gen uint64) ([]*pendingDelivery, bool) {
	for range 20 {
		s.mu.Lock()
		quiet := time.Since(s.arrived)
		s.mu.Unlock()
		if quiet >= settleWindow {
			break
		}
		time.Sleep(settleWindow - quiet)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || s.stopped {
		return nil, false
	}
	batch := s.resend
	s.resend = nil
	q := s.queue
	s.queue = nil
	sort.SliceStable(q, func(i, j int) bool { return lessPosition(q[i].msg, q[j].msg) })
	batch = append(batch, q...)
	s.sent = append(s.sent, batch...)
	return batch, true
}

// lessPosition orders messages by the time of their position, then partition, then sequence.
func lessPosition(a, b *herald.Message) bool {
	am, as, _ := strings.Cut(a.Position, "-")
	bm, bs, _ := strings.Cut(b.Position, "-")
	if am != bm {
		return herald.StreamIDLess(am, bm)
	}
	if a.Partition != b.Partition {
		return a.Partition < b.Partition
	}
	return herald.StreamIDLess(as, bs)
}

// confirmUpTo acknowledges every sent event up to and including pos.
func (s *session) confirmUpTo(pos string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.sent) - 1; i >= 0; i-- {
		if s.sent[i].pos == pos {
			s.confirmLocked(i + 1)
			return i + 1, true
		}
	}
	return 0, false
}

// settle acknowledges (verdict nil) or fails the sent events at positions.
func (s *session) settle(positions []string, verdict error) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]bool{}
	for _, p := range positions {
		want[p] = true
	}
	n := 0
	kept := s.sent[:0:0]
	outcome := "acked"
	if verdict != nil {
		outcome = "nacked"
	}
	for _, d := range s.sent {
		if want[d.pos] {
			d.result <- verdict
			n++
			s.st.g.metrics.delivered.WithLabelValues(s.topic, s.group, "sse", outcome).Inc()
			continue
		}
		kept = append(kept, d)
	}
	s.sent = kept
	return n
}

// newClientID is a session id: 128 random bits.
func newClientID() string {
	var b [16]byte
	rand.Read(b[:])
	return "c" + hex.EncodeToString(b[:])
}

// errSessionOwner answers a request for a session another API key created.
func errSessionOwner(client string) error {
	return errorf(http.StatusForbidden, CodeForbidden,
		"the session of client %q belongs to another API key; a session is used only with the key that created it (omit ?client= for a new one)", client)
}

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
	window := g.cfg.SSE.Window
	if v := q.Get("window"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxSSEWindow {
			return badRequest("window %q: use a number from 1 to %d", v, MaxSSEWindow)
		}
		window = n
	}
	autoAck := false
	switch a := q.Get("ack"); a {
	case "", "client":
	case "auto":
		autoAck = true
	default:
		return badRequest("ack %q is not supported; use client (the default: confirm with Last-Event-ID or the ack endpoint) or auto", a)
	}
	var opts []herald.SubscribeOption
	switch f := q.Get("from"); f {
	case "", "now":
	case "beginning":
		opts = append(opts, herald.From(herald.StartBeginning))
	default:
		return badRequest("from %q: a new group starts at now (the default) or beginning", f)
	}
	if f := q.Get("filter"); f != "" {
		opts = append(opts, herald.Filter(f))
	}
	if v := q.Get("max_attempts"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badRequest("max_attempts %q: use a positive number", v)
		}
		opts = append(opts, herald.MaxAttempts(n))
	}
	lastID := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if lastID == "" {
		lastID = q.Get("last_event_id")
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
			if s, err = g.sessions.open(ctx, p.keyName(), topic, group, client, window, autoAck, opts); err != nil {
				return err
			}
		}
		var ok bool
		if gen, kick, ok = s.attach(lastID); ok {
			break
		}
		if try > 40 {
			return errorf(http.StatusServiceUnavailable, CodeUnavailable, "the session of client %q is stopping; reconnect in a moment", client)
		}
		s = nil // it was stopping: wait for it to go, then open a new one
		time.Sleep(50 * time.Millisecond)
	}
	defer s.detach(gen)
	hdr := http.Header{}
	hdr.Set("Herald-Client", client)
	hdr.Set("Herald-Consumer", s.consumer)
	st, err := g.startSSE(w, hdr)
	if err != nil {
		return nil
	}
	g.metrics.streams.WithLabelValues("sse_group").Inc()
	defer g.metrics.streams.WithLabelValues("sse_group").Dec()
	info, _ := json.Marshal(map[string]string{"client": client, "consumer": s.consumer, "group": group, "topic": topic})
	if st.event("", "session", info) != nil {
		return nil
	}
	beat := time.NewTicker(g.cfg.SSE.Heartbeat)
	defer beat.Stop()
	for {
		batch, ok := s.next(gen)
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

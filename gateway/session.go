package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/heraldbus/herald"
)

// A group session is one client of a consumer group over SSE, a member of
// the group's feed in this process (groupfeed.go). It keeps the client's
// place across reconnects by its client id, and holds each event it sent
// until the client confirms it:
//
//   - every event sent on the stream is remembered, in the order sent;
//   - reconnecting with Last-Event-ID X confirms (acknowledges) every
//     remembered event up to and including X, and sends the rest again, in
//     the same order, before anything new: the stream resumes exactly
//     after X, with no gap. On an instance that did not send X (the client
//     came from another one, which stopped), the events the other instance
//     held unconfirmed come back through the group: nothing is lost, and
//     what the client saw but did not confirm may come again;
//   - POST /v1/topics/{topic}/groups/{group}/ack confirms while connected
//     ({"client", "up_to"} or {"client", "positions"}) or nacks (retry with
//     backoff, or dead-letter with "permanent");
//   - ?ack=auto confirms each event once it is written to the connection
//     (at-most-once towards a client that dies right after);
//   - at most ?window= events are unconfirmed at once; when the window is
//     full the stream says so with a "window_full" event and waits.
//
// A session outlives its connection by Config.SSE.ResumeWindow; after that,
// or at shutdown, its unconfirmed events are released to the group at once
// (another member or instance gets them).
type session struct {
	st                   *sessionStore
	key                  string
	owner                string // name of the API key that created it ("" without keys)
	quota                string // whose limits.max_sessions_per_key share it counts in (sessionQuota)
	topic, group, client string
	feed                 *groupFeed
	window               int
	autoAck              bool

	mu      sync.Mutex
	resend  []*pendingDelivery // sent on an earlier connection, unconfirmed: sent first, in the same order
	queue   []*pendingDelivery // from the feed, not yet sent
	arrived time.Time          // when the feed last queued an event
	sent    []*pendingDelivery // sent, not yet confirmed, in the order sent
	wake    chan struct{}
	gen     uint64        // generation of the attached connection; 0 when detached
	kick    chan struct{} // closed to make the attached connection leave
	expiry  *time.Timer
	stopped bool
	full    bool     // the window was full when last sent to (window_full said so)
	expired []string // positions sent and released by the ack timeout, not yet told to the client
}

type sessionStore struct {
	g        *Gateway
	instance string

	mu      sync.Mutex
	byKey   map[string]*session
	byQuota map[string]int // live sessions per sessionQuota
	closed  bool

	feedMu  sync.Mutex
	feeds   map[string]*groupFeed
	feedSeq int
	wg      sync.WaitGroup // one per running feed
}

func newSessionStore(g *Gateway) *sessionStore {
	id := g.cfg.Instance
	if id == "" {
		id = instanceID()
	}
	return &sessionStore{g: g, instance: id, byKey: map[string]*session{}, byQuota: map[string]int{}, feeds: map[string]*groupFeed{}}
}

func sessionKey(topic, group, client string) string { return topic + "\x00" + group + "\x00" + client }

func (st *sessionStore) get(topic, group, client string) *session {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.byKey[sessionKey(topic, group, client)]
}

// findByLastID finds the session of owner, topic and group that sent
// lastID and has no connection (an EventSource reconnecting without ?client=).
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

// sessionOptions are a group stream's subscription options.
type sessionOptions struct {
	window      int
	autoAck     bool
	start       herald.Start
	filter      string
	maxAttempts int
}

// open returns the session of the client, creating it (and joining the
// group's feed) when there is none. quota names the share of
// limits.max_sessions_per_key a new session counts in (sessionQuota).
func (st *sessionStore) open(ctx context.Context, owner, quota, topic, group, client string, o sessionOptions) (*session, error) {
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
	if n := st.byQuota[quota]; n >= st.g.cfg.Limits.MaxSessionsPerKey {
		st.mu.Unlock()
		st.g.metrics.limited.WithLabelValues("sessions_per_key").Inc()
		return nil, errorf(http.StatusTooManyRequests, CodeTooManyConnections,
			"%s holds %d group sessions, its limit (limits.max_sessions_per_key); a session lives sse.resume_window (%s) after its client leaves: "+
				"reconnect with the same ?client= or Last-Event-ID instead of opening new sessions, or try again later",
			quota, n, st.g.cfg.SSE.ResumeWindow)
	}
	// The place in the quota is taken now, so that concurrent requests
	// cannot all pass the check; the session keeps it, or it is given back.
	st.byQuota[quota]++
	st.mu.Unlock()
	kept := false
	defer func() {
		if !kept {
			st.mu.Lock()
			st.releaseQuotaLocked(quota)
			st.mu.Unlock()
		}
	}()
	for range 3 {
		f, err := st.feedFor(ctx, topic, group, o.start, o.filter, o.maxAttempts)
		if err != nil {
			return nil, err
		}
		s := &session{st: st, key: key, owner: owner, quota: quota, topic: topic, group: group, client: client, feed: f,
			window: o.window, autoAck: o.autoAck, wake: make(chan struct{}, 1)}
		st.mu.Lock()
		if other := st.byKey[key]; other != nil { // created meanwhile
			st.mu.Unlock()
			if other.owner != owner {
				return nil, errSessionOwner(client)
			}
			return other, nil
		}
		st.byKey[key] = s
		st.mu.Unlock()
		if f.join(s) {
			kept = true // stop gives it back
			st.g.metrics.sessions.Inc()
			return s, nil
		}
		st.mu.Lock()
		delete(st.byKey, key)
		st.mu.Unlock()
	}
	return nil, errorf(http.StatusServiceUnavailable, CodeUnavailable, "the group's consumer is restarting; reconnect in a moment")
}

// releaseQuotaLocked takes a session that ended out of its quota's count.
func (st *sessionStore) releaseQuotaLocked(quota string) {
	if st.byQuota[quota]--; st.byQuota[quota] <= 0 {
		delete(st.byQuota, quota)
	}
}

// closeAll stops every session and feed (shutdown): held events go back
// to their groups.
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
	st.feedMu.Lock()
	st.closed = true
	fs := make([]*groupFeed, 0, len(st.feeds))
	for _, f := range st.feeds {
		fs = append(fs, f)
	}
	st.feedMu.Unlock()
	for _, f := range fs {
		f.stop()
	}
}

func (st *sessionStore) wait() { st.wg.Wait() }

// offer takes an event from the feed when a connection is attached and
// the window has room (groupMember).
func (s *session) offer(d *pendingDelivery) (func(), bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.gen == 0 || len(s.resend)+len(s.queue)+len(s.sent) >= s.window {
		return nil, false
	}
	s.queue = append(s.queue, d)
	s.arrived = time.Now()
	return s.signal, true
}

// settled forgets d once the feed took its verdict (groupMember).
func (s *session) settled(d *pendingDelivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resend = without(s.resend, d)
	s.queue = without(s.queue, d)
	s.sent = without(s.sent, d)
	if s.full {
		s.full = false
		s.signal()
	}
}

// expire takes back d, which the client did not confirm within the ack
// timeout (groupMember): it reports false when d was settled meanwhile.
// The client is told, with an ack_timeout event, which events it sent
// went back to the group.
func (s *session) expire(d *pendingDelivery) bool {
	s.mu.Lock()
	sent := holds(s.sent, d) || holds(s.resend, d)
	if !sent && !holds(s.queue, d) {
		s.mu.Unlock()
		return false
	}
	s.resend = without(s.resend, d)
	s.queue = without(s.queue, d)
	s.sent = without(s.sent, d)
	if sent && s.gen != 0 && len(s.expired) < s.window {
		s.expired = append(s.expired, d.pos)
	}
	s.mu.Unlock()
	s.st.g.metrics.delivered.WithLabelValues(s.topic, s.group, "sse", herald.OutcomeTimeout).Inc()
	s.signal()
	return true
}

// takeExpired returns (and forgets) the positions released by the ack
// timeout since the last call.
func (s *session) takeExpired() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.expired
	s.expired = nil
	return e
}

func holds(ds []*pendingDelivery, d *pendingDelivery) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

func without(ds []*pendingDelivery, d *pendingDelivery) []*pendingDelivery {
	for i, x := range ds {
		if x == d {
			return append(ds[:i:i], ds[i+1:]...)
		}
	}
	return ds
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
	if s.stopped {
		s.mu.Unlock()
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
	gen, kick := s.gen, s.kick
	s.mu.Unlock()
	s.feed.notify() // room for the feed's waiting handlers
	return gen, kick, true
}

// confirmLocked acknowledges the first n sent events.
func (s *session) confirmLocked(n int) {
	for _, d := range s.sent[:n] {
		d.result <- nil
		s.st.g.metrics.delivered.WithLabelValues(s.topic, s.group, "sse", herald.OutcomeOK).Inc()
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

// stop ends the session: its unconfirmed events are released to the group.
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
	if s.expiry != nil {
		s.expiry.Stop()
	}
	held := append(append(append([]*pendingDelivery(nil), s.sent...), s.queue...), s.resend...)
	s.sent, s.queue, s.resend = nil, nil, nil
	s.mu.Unlock()
	for _, d := range held {
		select {
		case d.result <- herald.ErrRelease:
		default:
		}
	}
	if len(held) > 0 {
		s.st.g.metrics.delivered.WithLabelValues(s.topic, s.group, "sse", herald.OutcomeTimeout).Add(float64(len(held)))
	}
	s.feed.leave(s)
	s.st.mu.Lock()
	if s.st.byKey[s.key] == s {
		delete(s.st.byKey, s.key)
		s.st.releaseQuotaLocked(s.quota)
		s.st.g.metrics.sessions.Dec()
	}
	s.st.mu.Unlock()
}

// settleWindow is how long the stream waits for the handlers of one read
// batch to queue their events (they run concurrently), so that it can send
// them in stream order.
const settleWindow = 300 * time.Microsecond

// next takes the queued events for connection gen, marking them sent:
// first those to send again, in their order, then the new ones in stream
// order (by position time, partition and sequence). full reports a full
// window, newly since the last call.
func (s *session) next(gen uint64) (batch []*pendingDelivery, full, ok bool) {
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
		return nil, false, false
	}
	batch = s.resend
	s.resend = nil
	q := s.queue
	s.queue = nil
	sort.SliceStable(q, func(i, j int) bool { return lessPosition(q[i].msg, q[j].msg) })
	batch = append(batch, q...)
	s.sent = append(s.sent, batch...)
	if len(s.sent) >= s.window && !s.full && !s.autoAck {
		s.full, full = true, true
	}
	return batch, full, true
}

// unconfirmed is the number of events sent and not confirmed.
func (s *session) unconfirmed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
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
	outcome := herald.OutcomeOK
	if verdict != nil {
		outcome = herald.OutcomeError
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

package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heraldbus/herald"
)

// A groupFeed is the one consumer of the delivery engine that a process
// runs for a consumer group of a topic, shared by every SSE session and
// WebSocket subscription of that group in the process. Its subscription
// options (filter, max attempts) are those of the client that started it;
// a client asking for others while it has members is refused (409), so a
// process runs at most one feed per (topic, group), and at most
// Limits.MaxGroupFeeds feeds. Its handler hands each event to a member
// with room in its window (round robin), waits for that client's verdict,
// at most Config.AckTimeout, and returns it to the engine: acknowledged,
// retried, dead-lettered, or released (ErrRelease: the member left or did
// not answer in time; the event is offered again, to any member, or goes
// to another instance). Per-key order holds as the engine keeps it: the
// next event of a key is handed out only when the one before it is
// settled. A worker hands out the events of its slice of a read one at a
// time, so an event a client holds holds the events behind it: the ack
// timeout bounds that wait.
//
// Goroutines: the engine's workers (GroupFeedInFlight per feed, whatever
// the number of clients), owned by the feed's subscription; a feed stops
// feedLinger after its last member leaves, handing back what it holds.
type groupFeed struct {
	st          *sessionStore
	key         string
	topic       string
	group       string
	consumer    string
	filter      string
	maxAttempts int                  // herald.DefaultMaxAttempts when the client gave none
	sub         *herald.Subscription // set before ready is closed
	ready       chan struct{}        // closed once the subscription started (or failed: initErr)
	initErr     error

	mu      sync.Mutex
	members []groupMember
	rr      int
	changed chan struct{} // closed (and replaced) when a member may have room
	idle    *time.Timer
	stopped bool
}

// groupMember is a client of a group feed: an SSE session or a WebSocket
// group subscription.
type groupMember interface {
	// offer takes d when the member is connected and has room in its
	// window; it runs with the feed's lock held, so it must not block: work
	// that may block is returned as after, run once the lock is released.
	offer(d *pendingDelivery) (after func(), ok bool)
	// expire takes d back when the client did not settle it within the
	// ack timeout, and tells the client, without blocking; it reports
	// false when d was settled meanwhile (its verdict is, or is about to
	// be, in d.result).
	expire(d *pendingDelivery) bool
	// settled is called once d's verdict was taken, before the engine gets it.
	settled(d *pendingDelivery)
}

// pendingDelivery is an event held by a feed's handler until its client settles it.
type pendingDelivery struct {
	msg    *herald.Message
	pos    string
	result chan error // nil: acknowledge; an error: retry, dead-letter or release
}

// GroupFeedInFlight is the most events one group feed holds unsettled at
// once (its engine workers), shared by all members' windows.
const GroupFeedInFlight = 256

// feedKey names a feed: one per topic and group.
func feedKey(topic, group string) string {
	return topic + "\x00" + group
}

// instanceID names this gateway's consumers in the groups, unique per process.
func instanceID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// feedFor returns the feed of (topic, group), starting it when there is
// none. start, filter and maxAttempts are the subscription's options
// (start counts only when the group is created); a running feed with
// members and other options answers 409, and a new feed beyond
// Limits.MaxGroupFeeds answers 503.
func (st *sessionStore) feedFor(ctx context.Context, topic, group string, start herald.Start, filter string, maxAttempts int) (*groupFeed, error) {
	if maxAttempts <= 0 {
		maxAttempts = herald.DefaultMaxAttempts
	}
	key := feedKey(topic, group)
	st.feedMu.Lock()
	if st.closed {
		st.feedMu.Unlock()
		return nil, errorf(http.StatusServiceUnavailable, CodeShuttingDown, "the server is shutting down; reconnect in a moment")
	}
	if f := st.feeds[key]; f != nil && !f.isStopped() {
		if f.filter != filter || f.maxAttempts != maxAttempts {
			// Another set of options: the feed is replaced when nobody uses
			// it (it was lingering), else the request is refused.
			if !f.retireIfIdle() {
				st.feedMu.Unlock()
				return nil, f.conflict(filter, maxAttempts)
			}
		} else {
			st.feedMu.Unlock()
			select { // another request is starting it
			case <-f.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if f.initErr != nil {
				return nil, f.initErr
			}
			return f, nil
		}
	}
	if n := st.liveFeedsLocked(); n >= st.g.cfg.Limits.MaxGroupFeeds {
		st.feedMu.Unlock()
		st.g.metrics.limited.WithLabelValues("group_feeds").Inc()
		return nil, errorf(http.StatusServiceUnavailable, CodeTooManyGroups,
			"the server consumes %d groups at once, its limit (limits.max_group_feeds); subscribe to a group that has clients here, try again once some groups' clients have left, or raise the limit", n)
	}
	// Subscribing (creating the group on every partition) happens outside
	// the lock: a slow Redis holds up this group's clients only.
	st.feedSeq++
	f := &groupFeed{st: st, key: key, topic: topic, group: group, filter: filter, maxAttempts: maxAttempts,
		changed: make(chan struct{}), ready: make(chan struct{}),
		consumer: fmt.Sprintf("gw-%s-%d", st.instance, st.feedSeq)}
	st.feeds[key] = f
	st.feedMu.Unlock()
	opts := []herald.SubscribeOption{herald.Consumer(f.consumer), herald.Concurrency(GroupFeedInFlight),
		herald.MaxInFlight(GroupFeedInFlight), herald.From(start)}
	if filter != "" {
		opts = append(opts, herald.Filter(filter))
	}
	opts = append(opts, herald.MaxAttempts(maxAttempts))
	// The feed outlives the request that started it: it stops when idle or at shutdown.
	sub, err := st.g.c.Subscribe(context.WithoutCancel(ctx), topic, group, herald.HandlerFunc(f.handle), opts...)
	st.feedMu.Lock()
	if err == nil && st.closed { // shut down meanwhile
		sub.Stop()
		err = errorf(http.StatusServiceUnavailable, CodeShuttingDown, "the server is shutting down; reconnect in a moment")
	}
	if err != nil {
		if st.feeds[key] == f {
			delete(st.feeds, key)
		}
		st.feedMu.Unlock()
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
		f.initErr = err
		close(f.ready)
		return nil, err
	}
	f.sub = sub
	st.wg.Add(1)
	st.feedMu.Unlock()
	close(f.ready)
	st.g.metrics.subs.add(sub, subLabels{topic: topic, group: group, via: "gateway"})
	st.g.metrics.groupFeeds.Inc()
	go func() {
		<-sub.Done()
		st.g.metrics.subs.remove(sub)
		st.g.metrics.groupFeeds.Dec()
		st.feedMu.Lock()
		if st.feeds[key] == f {
			delete(st.feeds, key)
		}
		st.feedMu.Unlock()
		st.wg.Done()
	}()
	return f, nil
}

// liveFeedsLocked counts the feeds in the map that are not stopping.
func (st *sessionStore) liveFeedsLocked() int {
	n := 0
	for _, f := range st.feeds {
		if !f.isStopped() {
			n++
		}
	}
	return n
}

// retireIfIdle stops the feed when it has started and has no member (it
// lingers after its last one left); it reports whether it did.
func (f *groupFeed) retireIfIdle() bool {
	select {
	case <-f.ready:
	default:
		return false // starting: its first member is about to join
	}
	f.mu.Lock()
	idle := len(f.members) == 0 && f.idle != nil && !f.stopped
	if idle {
		f.stopped = true
		f.idle.Stop()
		f.idle = nil
	}
	f.mu.Unlock()
	if idle && f.sub != nil {
		f.sub.Stop()
	}
	return idle
}

// conflict is the answer to a client whose options differ from the feed's.
func (f *groupFeed) conflict(filter string, maxAttempts int) error {
	var diff []string
	if f.filter != filter {
		diff = append(diff, fmt.Sprintf("filter %q (its clients here use %q)", filter, f.filter))
	}
	if f.maxAttempts != maxAttempts {
		diff = append(diff, fmt.Sprintf("max_attempts %d (its clients here use %d)", maxAttempts, f.maxAttempts))
	}
	return errorf(http.StatusConflict, CodeGroupOptionsConflict,
		"group %q of topic %q has one consumer on this server, and this request asks for other options: %s; "+
			"subscribe with the same options as the group's other clients, use another group for other options, "+
			"or wait until its clients have left (a session ends sse.resume_window after its client disconnects)",
		f.group, f.topic, strings.Join(diff, ", "))
}

func (f *groupFeed) isStopped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stopped
}

// join adds a member; it reports false when the feed is stopping (ask
// feedFor for a new one).
func (f *groupFeed) join(m groupMember) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	if f.idle != nil {
		f.idle.Stop()
		f.idle = nil
	}
	f.members = append(f.members, m)
	f.notifyLocked()
	return true
}

// leave removes a member; the feed stops feedLinger after its last one.
func (f *groupFeed) leave(m groupMember) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.members {
		if x == m {
			f.members = append(f.members[:i], f.members[i+1:]...)
			break
		}
	}
	if len(f.members) == 0 && !f.stopped && f.idle == nil {
		f.idle = time.AfterFunc(feedLinger, f.stopIfIdle)
	}
}

func (f *groupFeed) stopIfIdle() {
	f.mu.Lock()
	idle := len(f.members) == 0 && !f.stopped
	if idle {
		f.stopped = true
	}
	f.mu.Unlock()
	if idle {
		f.sub.Stop()
	}
}

// stop ends the feed (shutdown): its handlers return and the events they
// held go back to the group.
func (f *groupFeed) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	<-f.ready
	if f.sub != nil {
		f.sub.Stop()
	}
}

// notify wakes handlers waiting for a member with room.
func (f *groupFeed) notify() {
	f.mu.Lock()
	f.notifyLocked()
	f.mu.Unlock()
}

func (f *groupFeed) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// handle is the feed's engine handler.
func (f *groupFeed) handle(ctx context.Context, m *herald.Message) error {
	d := &pendingDelivery{msg: m, pos: m.Pos().String(), result: make(chan error, 1)}
	var member groupMember
	for member == nil {
		f.mu.Lock()
		var after func()
		for i := range f.members {
			x := f.members[(f.rr+i)%len(f.members)]
			if a, ok := x.offer(d); ok {
				member, after = x, a
				f.rr = (f.rr + i + 1) % len(f.members)
				break
			}
		}
		ch := f.changed
		f.mu.Unlock()
		if member != nil {
			if after != nil {
				after()
			}
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return herald.ErrRelease
		}
	}
	timeout := time.NewTimer(f.st.g.cfg.AckTimeout)
	defer timeout.Stop()
	var err error
	select {
	case err = <-d.result:
	case <-timeout.C:
		err = herald.ErrRelease
		if !member.expire(d) { // settled meanwhile: its verdict counts
			select {
			case err = <-d.result:
			case <-ctx.Done():
			}
		}
	case <-ctx.Done():
		select {
		case err = <-d.result: // a verdict that raced the stop still counts
		default:
			err = herald.ErrRelease
		}
	}
	member.settled(d)
	f.notify()
	return err
}

package herald

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"
)

// Subscription is a running consumer of one group on one topic: a handle on
// the delivery engine (engine.go), which owns the goroutines and their
// shutdown order. Done is closed once the engine has stopped and the
// subscription left its client.
type Subscription struct {
	c     *Client
	t     *topic
	group string
	o     subOptions
	eng   *engine

	fetchCancel   context.CancelFunc
	handlerCancel context.CancelFunc

	done chan struct{}
	err  atomic.Pointer[error]

	stats subStats
}

type subStats struct {
	handled, failed, retried, dead, reclaimed, trimmed, errors, filtered atomic.Int64

	inline atomic.Int64 // slices a reader handled itself (not exported; tests read it)
}

// SubscriptionStats are counters of a subscription since it started.
type SubscriptionStats struct {
	Handled      int64 // handler returned nil and the event was acknowledged
	Failed       int64 // handler returned an error
	Retried      int64 // failures retried (ordered: in place after the backoff; unordered: through the retry schedule)
	DeadLettered int64 // failures moved to the dead-letter stream
	Reclaimed    int64 // pending entries taken over: from a partition's former owner (ordered), from silent consumers (unordered)
	// Trimmed counts pending entries of the group that were trimmed from the
	// stream (retention) before they were handled: acknowledged and lost.
	// Each is counted once, by the consumer whose acknowledgement or claim
	// removed it from the group's pending list.
	Trimmed     int64
	RedisErrors int64 // Redis errors met (and retried)
	Filtered    int64 // events the Filter condition rejected: acknowledged unhandled
}

// ValidateSubscribeOptions reports what is wrong with opts (an error
// wrapping ErrInvalid), as Subscribe would, without connecting: for
// checking a command line or a configuration early.
func ValidateSubscribeOptions(opts ...SubscribeOption) error {
	var o subOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o.fill()
}

// Subscribe starts consuming topic as a member of group, calling h for each
// event. The group is created when missing (from now, or the beginning with
// From(StartBeginning)), and the topic too unless automatic creation is off.
// The subscription runs until ctx is done, Stop or Drain is called, or the
// Client is closed.
func (c *Client) Subscribe(ctx context.Context, topicName, group string, h Handler, opts ...SubscribeOption) (*Subscription, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, invalid("handler is nil")
	}
	if err := ValidateName("group", group); err != nil {
		return nil, err
	}
	var o subOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.fill(); err != nil {
		return nil, err
	}
	t, err := c.topic(ctx, topicName, true)
	if err != nil {
		return nil, err
	}
	start := "$"
	if o.start == StartBeginning {
		start = "0"
	}
	if o.startAt != nil {
		if err := o.startAt.check(t); err != nil {
			return nil, err
		}
	}
	for p, pk := range t.parts {
		start := start
		if o.startAt != nil {
			if id, ok := o.startAt.lastID(p); ok {
				start = id
			} else {
				start = "0-0" // ToPosition names another partition: this one from the beginning
			}
		}
		if err := c.db.EnsureGroup(ctx, pk, group, start); err != nil {
			return nil, fmt.Errorf("herald: create group %q on %s: %w", group, pk.Stream, err)
		}
	}
	if err := c.joinGroupMode(ctx, t, group, &o); err != nil {
		return nil, err
	}
	s := &Subscription{c: c, t: t, group: group, o: o, done: make(chan struct{})}
	fetchCtx, fetchCancel := context.WithCancel(context.Background())
	handlerCtx, handlerCancel := context.WithCancel(context.Background())
	s.fetchCancel, s.handlerCancel = fetchCancel, handlerCancel
	s.eng = newEngine(c, t, group, h, &s.o, &s.stats, fetchCtx, handlerCtx)
	s.eng.end = func(err error) {
		s.err.CompareAndSwap(nil, &err)
		s.Stop()
	}
	if err := c.addSub(s); err != nil {
		return nil, err
	}
	go func() {
		s.eng.run()
		handlerCancel()
		c.removeSub(s)
		close(s.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			s.Stop()
		case <-s.done:
		}
	}()
	c.log.Debug("subscribed", "topic", topicName, "group", group, "consumer", o.consumer)
	return s, nil
}

// Topic, Group and ConsumerName identify the subscription.
func (s *Subscription) Topic() string { return s.t.name }

// Group is the consumer group.
func (s *Subscription) Group() string { return s.group }

// ConsumerName is this consumer's name in the group.
func (s *Subscription) ConsumerName() string { return s.o.consumer }

// Done is closed when the subscription has stopped.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is the error that stopped the subscription by itself, or nil. Redis
// errors are retried with backoff rather than ending the subscription; it
// ends by itself when its topic was deleted (DeleteTopic, by any client):
// Err then wraps ErrTopicNotFound.
func (s *Subscription) Err() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SubscriptionStats {
	return SubscriptionStats{Handled: s.stats.handled.Load(), Failed: s.stats.failed.Load(), Retried: s.stats.retried.Load(),
		DeadLettered: s.stats.dead.Load(), Reclaimed: s.stats.reclaimed.Load(), Trimmed: s.stats.trimmed.Load(),
		RedisErrors: s.stats.errors.Load(), Filtered: s.stats.filtered.Load()}
}

// Stop stops reading and cancels running handlers' contexts without waiting.
// Events read but not handled stay pending: an ordered subscription's
// partitions are handed to the other consumers at once, which take them
// over; an unordered one's are redelivered after the visibility timeout.
// Done is closed when everything has stopped.
func (s *Subscription) Stop() {
	s.handlerCancel()
	s.fetchCancel()
}

// Drain stops reading, lets the events already read be handled and their
// acknowledgements be sent, and returns when all is done or ctx ends (then
// it stops as Stop does and returns ctx.Err() at once, without waiting for
// running handlers: Done says when they have returned). Events parked behind
// a failing event of their key are not waited for: they stay pending, in
// order, for the partition's next owner.
func (s *Subscription) Drain(ctx context.Context) error {
	s.fetchCancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.Stop() // Done is closed once running handlers have returned
		return ctx.Err()
	}
}

// forgetIdleConsumers runs the janitor's step that removes idle consumers.
func (s *Subscription) forgetIdleConsumers() { s.eng.forgetIdleConsumers() }

// Consumers that hold nothing and have not read for idleConsumerAfter are
// removed from the group (every process that subscribes under a generated
// name adds one), checked every forgetEvery by each subscription.
var (
	idleConsumerAfter = time.Hour
	forgetEvery       = 5 * time.Minute
)

// backoff is a capped exponential wait with jitter for reconnect loops.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 50 * time.Millisecond} }

func (b *backoff) reset() { b.d = 50 * time.Millisecond }

func (b *backoff) wait(ctx context.Context) {
	d := b.d/2 + time.Duration(rand.Int64N(int64(b.d/2)+1))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	if b.d < 2*time.Second {
		b.d *= 2
	}
}

func randInt63n(n int64) int64 { return rand.Int64N(n) }

// joinGroupMode refuses a subscription whose mode differs from that of the
// group's live consumers, and registers this one in its mode's live set (the
// engine keeps it there: the owner loop for ordered consumers, the janitor
// for unordered ones). Both modes in one group would break either's promise:
// an unordered consumer reads partitions that ordered owners hold, and an
// ordered owner claims what others read on its partitions.
func (c *Client) joinGroupMode(ctx context.Context, t *topic, group string, o *subOptions) error {
	first := t.parts[0]
	ordered, unordered, err := c.db.LiveModes(ctx, first, group)
	if err != nil {
		return fmt.Errorf("herald: read the consumers of group %q: %w", group, err)
	}
	others := func(names []string) []string {
		var out []string
		for _, n := range names {
			if n != o.consumer {
				out = append(out, n)
			}
		}
		return out
	}
	if o.unordered {
		if live := others(ordered); len(live) > 0 {
			return invalid("group %q of topic %q has ordered consumers (%s): subscribe without Unordered (--unordered), or use another group for unordered consumers",
				group, t.name, strings.Join(live, ", "))
		}
		_, err = c.db.HeartbeatUnordered(ctx, first, group, o.consumer, o.visibility.Milliseconds())
	} else {
		if live := others(unordered); len(live) > 0 {
			return invalid("group %q of topic %q has unordered consumers (%s): subscribe with Unordered (--unordered), or use another group for ordered consumers",
				group, t.name, strings.Join(live, ", "))
		}
		_, err = c.db.Heartbeat(ctx, first, group, o.consumer, o.lease.Milliseconds())
	}
	if err != nil {
		return fmt.Errorf("herald: join group %q: %w", group, err)
	}
	return nil
}

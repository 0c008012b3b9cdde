package watermill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald"
)

// Defaults of SubscriberConfig.
const (
	// DefaultConcurrency is one message at a time per subscription: the next
	// message is sent on the channel after the previous one was acked or
	// nacked, as Watermill subscribers usually do.
	DefaultConcurrency = 1
	// DefaultCloseTimeout bounds how long Close waits for subscriptions to stop.
	DefaultCloseTimeout = 30 * time.Second
	// EphemeralGroupPrefix starts the name of the group a subscription gets
	// when SubscriberConfig.ConsumerGroup is empty.
	EphemeralGroupPrefix = "watermill-"
)

// ErrNacked is the handler error Herald records for a nacked message.
var ErrNacked = errors.New("herald watermill: message nacked")

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// Client is the Herald client to subscribe with. Close leaves it open.
	// When nil, NewSubscriber creates one from Herald and Close closes it.
	Client *herald.Client
	// Herald configures the client NewSubscriber creates when Client is nil.
	Herald herald.Config
	// ConsumerGroup is the Herald consumer group every Subscribe joins:
	// subscribers (in any process) with the same group share the messages
	// of a topic, each one handled by one of them. Empty: each Subscribe
	// call gets a group of its own (EphemeralGroupPrefix and a random
	// suffix), so every subscription receives every message (fan-out); that
	// group is deleted when the subscription ends.
	ConsumerGroup string
	// Start is where a group that Subscribe creates starts reading
	// (default herald.StartNow; herald.StartBeginning delivers every event
	// still stored). An existing group keeps its position.
	Start herald.Start
	// Concurrency is how many messages of one subscription may be out on
	// its channel, unacked, at once (default DefaultConcurrency).
	Concurrency int
	// Options are applied to every Herald subscription, after the ones the
	// adapter sets: e.g. herald.Backoff for the delay after a Nack,
	// herald.MaxAttempts for the deliveries before an event is
	// dead-lettered (Herald's default is 8), herald.VisibilityTimeout.
	Options []herald.SubscribeOption
	// CloseTimeout bounds how long Close waits for subscriptions to stop
	// (default DefaultCloseTimeout).
	CloseTimeout time.Duration
}

// Subscriber consumes Herald topics as Watermill message channels. It is
// safe for concurrent use.
type Subscriber struct {
	c   *herald.Client
	own bool
	cfg SubscriberConfig

	mu     sync.Mutex
	closed bool
	subs   map[*herald.Subscription]struct{}
	wg     sync.WaitGroup // one per subscription, until its channel is closed
	errs   []error        // from ending subscriptions (deleting ephemeral groups)
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a Subscriber. ctx bounds connecting to Redis when
// the Subscriber creates its own client.
func NewSubscriber(ctx context.Context, cfg SubscriberConfig) (*Subscriber, error) {
	if cfg.Concurrency < 0 {
		return nil, fmt.Errorf("herald watermill: concurrency %d is negative; use 0 for the default (%d) or more", cfg.Concurrency, DefaultConcurrency)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.CloseTimeout < 0 {
		return nil, fmt.Errorf("herald watermill: close timeout %s is negative; use 0 for the default (%s) or more", cfg.CloseTimeout, DefaultCloseTimeout)
	}
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = DefaultCloseTimeout
	}
	if cfg.ConsumerGroup != "" {
		if err := herald.ValidateName("group", cfg.ConsumerGroup); err != nil {
			return nil, fmt.Errorf("herald watermill: %w", err)
		}
	}
	c, own, err := client(ctx, cfg.Client, cfg.Herald)
	if err != nil {
		return nil, err
	}
	return &Subscriber{c: c, own: own, cfg: cfg, subs: map[*herald.Subscription]struct{}{}}, nil
}

// Subscribe joins the consumer group (see SubscriberConfig.ConsumerGroup)
// on topic and returns the channel its messages arrive on. Each message
// must be acked or nacked; its Context ends after that, or when the
// subscription ends. The channel is closed when ctx ends or Close is
// called; messages sent but not acked by then are handed back to the group
// unhandled: no attempt is counted, and a consumer of the group takes them
// over at its next reclaim (every third of Herald's visibility timeout)
// rather than after the whole timeout.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.wg.Add(1) // under mu, so Close's Wait cannot miss it
	}
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	group, ephemeral := s.cfg.ConsumerGroup, false
	if group == "" {
		var b [12]byte
		rand.Read(b[:])
		group, ephemeral = EphemeralGroupPrefix+hex.EncodeToString(b[:]), true
	}
	out := make(chan *message.Message)
	opts := append([]herald.SubscribeOption{herald.From(s.cfg.Start), herald.Concurrency(s.cfg.Concurrency)}, s.cfg.Options...)
	sub, err := s.c.Subscribe(ctx, topic, group, handler(ctx, out), opts...)
	if err != nil {
		s.wg.Done()
		return nil, fmt.Errorf("herald watermill: subscribe to %s as %s: %w", topic, group, err)
	}
	s.mu.Lock()
	if s.closed { // Close ran meanwhile and did not see sub
		sub.Stop()
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		<-sub.Done()
		// No handler runs any more: nothing sends on out.
		close(out)
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
		if ephemeral {
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.c.DeleteGroup(dctx, topic, group); err != nil {
				s.mu.Lock()
				s.errs = append(s.errs, fmt.Errorf("herald watermill: delete group %s of %s: %w", group, topic, err))
				s.mu.Unlock()
			}
		}
	}()
	return out, nil
}

// handler sends each delivered event on out as a Watermill message and
// turns its Ack into nil (handled) and its Nack into ErrNacked (retried by
// Herald). A stop before either hands the event back with herald.ErrRelease.
func handler(ctx context.Context, out chan<- *message.Message) herald.HandlerFunc {
	return func(hctx context.Context, m *herald.Message) error {
		msg := toMessage(m)
		mctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(hctx, cancel)
		defer stop()
		msg.SetContext(mctx)
		select {
		case out <- msg:
		case <-mctx.Done():
			return herald.ErrRelease
		}
		select {
		case <-msg.Acked():
			return nil
		case <-msg.Nacked():
			return ErrNacked
		case <-mctx.Done():
			select { // an ack that raced with the stop still counts
			case <-msg.Acked():
				return nil
			case <-msg.Nacked():
				return ErrNacked
			default:
				return herald.ErrRelease
			}
		}
	}
}

// toMessage builds the Watermill message of a delivered event.
func toMessage(m *herald.Message) *message.Message {
	uuid, ok := m.Headers[HeaderUUID]
	if !ok {
		uuid = m.ID
	}
	msg := message.NewMessage(uuid, m.Data)
	if len(m.Headers) > 0 {
		md := make(message.Metadata, len(m.Headers))
		maps.Copy(md, m.Headers)
		delete(md, HeaderUUID)
		msg.Metadata = md
	}
	return msg
}

// Close stops every subscription, waits (up to CloseTimeout) until their
// channels are closed, and closes the Herald client if NewSubscriber
// created it. Unacked messages are handed back to their groups. It is
// idempotent.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for sub := range s.subs {
		sub.Stop()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-time.After(s.cfg.CloseTimeout):
		err = fmt.Errorf("herald watermill: subscriptions did not stop within %s", s.cfg.CloseTimeout)
	}
	s.mu.Lock()
	errs := append([]error{err}, s.errs...)
	s.mu.Unlock()
	if s.own {
		errs = append(errs, s.c.Close())
	}
	return errors.Join(errs...)
}

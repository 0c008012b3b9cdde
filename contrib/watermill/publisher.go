package watermill

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald"
)

// HeaderUUID is the Herald event header that carries the Watermill message
// UUID. A delivered event without it (published by something other than
// this adapter) gets its Herald event id as UUID.
const HeaderUUID = "_watermill_message_uuid"

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("herald watermill: closed")

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Client is the Herald client to publish with. Close leaves it open.
	// When nil, NewPublisher creates one from Herald and Close closes it.
	Client *herald.Client
	// Herald configures the client NewPublisher creates when Client is nil.
	Herald herald.Config
	// Key returns the Herald partition key of a message: messages with the
	// same key are stored in one partition, in publish order. Nil: no key,
	// messages are spread over the topic's partitions.
	Key func(topic string, msg *message.Message) string
	// Options are applied to every publish, e.g. herald.WithDurability.
	Options []herald.PublishOption
}

// Publisher publishes Watermill messages as Herald events. It is safe for
// concurrent use.
type Publisher struct {
	c    *herald.Client
	own  bool
	cfg  PublisherConfig
	mu   sync.RWMutex
	done bool
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher. ctx bounds connecting to Redis when the
// Publisher creates its own client.
func NewPublisher(ctx context.Context, cfg PublisherConfig) (*Publisher, error) {
	c, own, err := client(ctx, cfg.Client, cfg.Herald)
	if err != nil {
		return nil, err
	}
	return &Publisher{c: c, own: own, cfg: cfg}, nil
}

// Publish appends msgs to topic, in order, and returns when Redis has
// stored them (one Herald PublishBatch call). Metadata becomes the events'
// headers and the UUID the HeaderUUID header; the Herald event id is left
// for Herald to set, so publishing a message twice stores it twice.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.done {
		return ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	evs := make([]herald.Event, len(msgs))
	for i, m := range msgs {
		h := make(map[string]string, len(m.Metadata)+1)
		maps.Copy(h, m.Metadata)
		h[HeaderUUID] = m.UUID
		evs[i] = herald.Event{Headers: h, Data: m.Payload}
		if p.cfg.Key != nil {
			evs[i].Key = p.cfg.Key(topic, m)
		}
	}
	if _, err := p.c.PublishBatch(context.Background(), topic, evs, p.cfg.Options...); err != nil {
		return fmt.Errorf("herald watermill: publish %d message(s) to %s: %w", len(msgs), topic, err)
	}
	return nil
}

// Close makes later Publish calls fail with ErrClosed, waits for running
// ones, and closes the Herald client if NewPublisher created it. It is
// idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return nil
	}
	p.done = true
	if p.own {
		return p.c.Close()
	}
	return nil
}

// client returns c, or a new client from cfg (own = true).
func client(ctx context.Context, c *herald.Client, cfg herald.Config) (*herald.Client, bool, error) {
	if c != nil {
		return c, false, nil
	}
	c, err := herald.New(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("herald watermill: %w", err)
	}
	return c, true, nil
}

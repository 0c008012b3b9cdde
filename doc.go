// Package herald is a distributed event bus built on Redis.
//
// Durable topics live in Redis Streams: a topic has a fixed number of
// partitions, each a stream whose keys share one hash tag, so every script and
// transaction on a partition touches one cluster slot. Publishers append with
// an idempotent Lua script (a producer id and a per-partition batch sequence:
// a retried batch is never appended twice) and concurrent Publish calls are
// coalesced into pipelined batches. Subscribers are consumer groups: many
// groups on a topic fan out, many consumers in a group share the load,
// delivery is at-least-once, failures are retried with exponential backoff
// and then dead-lettered, and the entries of a crashed consumer are reclaimed
// after a visibility timeout.
//
// A minimal program:
//
//	c, err := herald.New(ctx, herald.Config{URL: "redis://127.0.0.1:6379"})
//	if err != nil { ... }
//	defer c.Close()
//	pos, err := c.Publish(ctx, "orders", herald.Event{Type: "order.created", Key: "o-1", Data: []byte(`{"id":1}`)})
//	sub, err := c.Subscribe(ctx, "orders", "billing", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
//		return bill(m.Data) // nil acks; an error retries; herald.Permanent(err) dead-letters at once
//	}))
//
// A Client's lifecycle is http.Server's: New dials under its context,
// Shutdown(ctx) drains subscriptions and sends what was published before
// it returns (or reports what was left when ctx ended), Close is the quick
// form, and every call after them fails with ErrClosed.
//
// The stored layout is documented in docs/redis-schema.md, so that any Redis
// client in any language can produce and consume Herald events.
package herald

// Package watermill runs Watermill on Herald: a Publisher and a Subscriber
// that implement Watermill's message.Publisher and message.Subscriber over a
// herald.Client, so Watermill routers, middleware and CQRS components can
// use Herald topics on Redis.
//
// Mapping:
//
//   - A Watermill topic is a Herald topic; a message is a Herald event whose
//     Data is the payload and whose Headers are the metadata.
//   - The message UUID travels in the header HeaderUUID. It is not the Herald
//     event id: Watermill legitimately publishes a message again with the
//     same UUID, and Herald would deduplicate events with the same id.
//   - Subscribe joins a Herald consumer group: SubscriberConfig.ConsumerGroup
//     when set (subscribers with the same group share the work), otherwise a
//     group of its own that is deleted when the subscription ends (every
//     such subscription receives every message published after it started).
//   - Ack acknowledges the event (the Herald handler returns nil). Nack
//     fails the attempt: Herald redelivers the event after its retry backoff
//     and, after the subscription's MaxAttempts, moves it to the topic's
//     dead-letter stream.
//   - Order is Herald's: by default a group reads each partition through one
//     consumer at a time and handles the events of one key in order, so
//     with one message out per subscription (SubscriberConfig.Concurrency
//     1, the default) messages arrive in publish order per partition;
//     PublisherConfig.Key picks the partition key. herald.Unordered in
//     SubscriberConfig.Options gives that up for throughput.
//
// The package is its own Go module, so the Herald module does not depend on
// Watermill.
package watermill

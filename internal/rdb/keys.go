package rdb

import "strings"

// Keys builds every Redis key Herald uses. It is the only place key names are
// spelled; docs/redis-schema.md documents the same layout.
//
// All keys of one partition share the hash tag {tag}, so every script and
// transaction on a partition touches one cluster slot.
type Keys struct {
	NS string // namespace prefix, default "herald"
}

// Topics is the set of topic names.
func (k Keys) Topics() string { return k.NS + ":topics" }

// Topic is the metadata hash of a topic.
func (k Keys) Topic(name string) string { return k.NS + ":topic:" + name }

// TopicDeleted is the tombstone DeleteTopic leaves for a day: a client that
// finds a topic's metadata gone tells a deletion (this key set) from a
// Redis that restarted without persistence (it is not).
func (k Keys) TopicDeleted(name string) string { return k.NS + ":topic-deleted:" + name }

// Part returns the keys of one partition, given its hash tag.
func (k Keys) Part(tag string) PartKeys {
	base := k.NS + ":{" + tag + "}:"
	return PartKeys{Base: base, Stream: base + "s", DLQ: base + "dlq"}
}

// PartKeys are the keys of one partition.
type PartKeys struct {
	Base   string // "<ns>:{<tag>}:"
	Stream string // the partition stream
	DLQ    string // dead letters of every group
}

// Retry is the stream of a group's due retries.
func (p PartKeys) Retry(group string) string { return p.Base + "r:" + group }

// Schedule is the sorted set of a group's scheduled retries.
func (p PartKeys) Schedule(group string) string { return p.Base + "z:" + group }

// Producer is a producer's idempotency state on the partition.
func (p PartKeys) Producer(id string) string { return p.Base + "p:" + id }

// DedupePrefix prefixes the per-event dedupe keys of caller-set ids.
func (p PartKeys) DedupePrefix() string { return p.Base + "id:" }

// IsRetry reports whether key is a group retry stream.
func (p PartKeys) IsRetry(key string) bool { return strings.HasPrefix(key, p.Base+"r:") }

// Entity is the stream of one event-sourced entity (expected-version appends).
func (k Keys) Entity(name string) string { return k.NS + ":entity:{" + name + "}" }

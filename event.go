package herald

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event is what publishers send and handlers receive.
type Event struct {
	// ID identifies the event. Empty: Herald sets a UUIDv7. Set by the
	// caller: the event is deduplicated within the topic's dedupe window.
	ID string
	// Type names what happened, e.g. "article.updated".
	Type string
	// Key is the partition key: events with the same key go to the same
	// partition, in order. Empty: events are spread over the partitions.
	Key string
	// Source identifies the producer, Subject the thing the event is about.
	Source  string
	Subject string
	// Time is when it happened. Zero: the append time (from the stream position).
	Time time.Time
	// ContentType of Data, e.g. "application/json".
	ContentType string
	// Headers are free-form string pairs (trace context and the like).
	Headers map[string]string
	// Data is the payload, stored as is.
	Data []byte
}

// Position is where an event is stored: a partition and a stream id.
type Position struct {
	Partition int
	ID        string
	// Duplicate is true when the event was not appended because an event
	// with the same caller-set id is already stored at this position.
	Duplicate bool
	// Replicas is the number of replicas that acknowledged a Replicated
	// publish (-1 for Memory durability).
	Replicas int
	// Degraded is true when a Replicated publish got fewer replicas than asked.
	Degraded bool
}

// String formats the position as "<partition>/<stream id>".
func (p Position) String() string { return strconv.Itoa(p.Partition) + "/" + p.ID }

// ParsePosition parses "<partition>/<stream id>" (or a bare stream id, partition 0).
func ParsePosition(s string) (Position, error) {
	part, id, ok := strings.Cut(s, "/")
	p := 0
	if ok {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return Position{}, invalid("position %q: partition %q is not a number; use <partition>/<ms>-<seq>", s, part)
		}
		p = n
	} else {
		id = part
	}
	if !validStreamID(id) {
		return Position{}, invalid("position %q: %q is not a stream id; use <partition>/<ms>-<seq>", s, id)
	}
	return Position{Partition: p, ID: id}, nil
}

// StreamIDLess reports whether stream id a ("<ms>-<seq>") comes before b,
// comparing both parts as numbers.
func StreamIDLess(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if len(am) != len(bm) {
		return len(am) < len(bm)
	}
	if am != bm {
		return am < bm
	}
	if len(as) != len(bs) {
		return len(as) < len(bs)
	}
	return as < bs
}

func validStreamID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	if !ok {
		return true
	}
	_, err := strconv.ParseUint(seq, 10, 64)
	return err == nil
}

// Message is a delivered event.
type Message struct {
	Event
	Topic     string
	Group     string
	Partition int
	// Position is the event's position in its partition stream; a retried or
	// redriven event keeps the position of its first append.
	Position string
	// Attempt is 1 on the first delivery and grows with each retry.
	Attempt int
}

// Pos returns the message's partition and position.
func (m *Message) Pos() Position { return Position{Partition: m.Partition, ID: m.Position} }

// String identifies the message: topic, position and event id.
func (m *Message) String() string {
	return fmt.Sprintf("%s %d/%s %s", m.Topic, m.Partition, m.Position, m.ID)
}

// Entity streams: one stream per entity ("order-123"), appended with an
// expected version (optimistic concurrency) and read back in version order,
// for event sourcing. They are apart from topics: no partitions, no groups.

package herald

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/rdb"
)

// ErrVersionConflict is returned by Append when the entity stream is not at
// the expected version: someone else appended first. Read, decide again,
// and retry with the new version.
var ErrVersionConflict = errors.New("herald: version conflict")

// VersionConflictError carries the entity's current version.
type VersionConflictError struct {
	Stream   string
	Expected int64
	Current  int64
}

// Error says which stream, the expected and the current version.
func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("herald: version conflict on %q: expected version %d, the stream is at %d", e.Stream, e.Expected, e.Current)
}

// Unwrap makes errors.Is(err, ErrVersionConflict) true.
func (e *VersionConflictError) Unwrap() error { return ErrVersionConflict }

// VersionedEvent is an event of an entity stream with its version (1 for
// the first event).
type VersionedEvent struct {
	Event
	Version int64
}

// Append appends events to the entity stream (for event sourcing: one stream
// per entity, e.g. "order-123") if the stream is at expectedVersion (0 for a
// new entity), atomically, and returns the new version. When another writer
// got there first it returns a *VersionConflictError (errors.Is
// ErrVersionConflict) and writes nothing. Event v is stored at stream id 0-v.
func (c *Client) Append(ctx context.Context, stream string, expectedVersion int64, events ...Event) (int64, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	if err := ValidateName("stream", stream); err != nil {
		return 0, err
	}
	if expectedVersion < 0 {
		return 0, invalid("expected version %d is negative; use 0 for a new stream", expectedVersion)
	}
	if len(events) == 0 {
		return 0, invalid("no events to append")
	}
	now := time.Now()
	fields := make([][]string, len(events))
	for i := range events {
		ev := events[i]
		if ev.ID == "" {
			ev.ID = newID()
		}
		if ev.Time.IsZero() {
			ev.Time = now // the stream id carries the version, not the time
		}
		if err := validHeaders(&ev); err != nil {
			return 0, fmt.Errorf("event %d: %w", i, err)
		}
		if n := codec.Size((*codec.Event)(&ev)); n > DefaultMaxEventBytes {
			return 0, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, n, DefaultMaxEventBytes)
		}
		fields[i] = codec.Append(nil, (*codec.Event)(&ev))
	}
	key := c.db.Keys.Entity(stream)
	v, err := c.db.EntityAppend(ctx, key, expectedVersion, fields)
	if errors.Is(err, rdb.ErrVersionConflict) {
		return v, &VersionConflictError{Stream: stream, Expected: expectedVersion, Current: v}
	}
	if err != nil {
		return 0, fmt.Errorf("herald: append to %q: %w", stream, err)
	}
	return v, nil
}

// Read returns the events of an entity stream from version fromVersion
// (1 = the first event; 0 is taken as 1), in order.
func (c *Client) Read(ctx context.Context, stream string, fromVersion int64) ([]VersionedEvent, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if err := ValidateName("stream", stream); err != nil {
		return nil, err
	}
	if fromVersion < 1 {
		fromVersion = 1
	}
	key := c.db.Keys.Entity(stream)
	var out []VersionedEvent
	start := "0-" + strconv.FormatInt(fromVersion, 10)
	for {
		es, err := c.db.Range(ctx, key, start, "+", 1000)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			ev, _, err := codec.Decode(e.Pairs, e.ID)
			if err != nil {
				return nil, fmt.Errorf("herald: read %q at %s: %w", stream, e.ID, err)
			}
			out = append(out, VersionedEvent{Event: Event(ev), Version: rdb.VersionOf(e.ID)})
		}
		if len(es) < 1000 {
			return out, nil
		}
		start = "(" + es[len(es)-1].ID
	}
}

// appendEntityWatch is the WATCH/MULTI/EXEC variant of Append, kept for the
// benchmark that compares it with the script (docs/design.md).
func (c *Client) appendEntityWatch(ctx context.Context, stream string, expected int64, events ...Event) (int64, error) {
	fields := make([][]string, len(events))
	for i := range events {
		ev := events[i]
		ev.ID, ev.Time = newID(), time.Now()
		fields[i] = codec.Append(nil, (*codec.Event)(&ev))
	}
	v, err := c.db.EntityAppendWatch(ctx, c.db.Keys.Entity(stream), expected, fields)
	if errors.Is(err, rdb.ErrVersionConflict) {
		return v, &VersionConflictError{Stream: stream, Expected: expected, Current: v}
	}
	return v, err
}

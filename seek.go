package herald

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

// SeekTarget says where SeekGroup and CreateGroup put a group: the
// beginning, the end, a time, or a position in one partition.
type SeekTarget struct {
	kind int // seekBeginning, seekEnd, seekTime, seekPosition
	t    time.Time
	pos  Position
}

const (
	seekBeginning = iota + 1
	seekEnd
	seekTime
	seekPosition
)

// ToBeginning delivers every event still stored, again.
func ToBeginning() SeekTarget { return SeekTarget{kind: seekBeginning} }

// ToEnd skips every stored event: only events appended later are delivered.
func ToEnd() SeekTarget { return SeekTarget{kind: seekEnd} }

// ToTime delivers the events appended at or after t (by their stream
// position's time, millisecond precision), on every partition.
func ToTime(t time.Time) SeekTarget { return SeekTarget{kind: seekTime, t: t} }

// ToPosition moves one partition only: its next delivered event is the
// first at or after pos.ID. The other partitions keep their place.
func ToPosition(pos Position) SeekTarget { return SeekTarget{kind: seekPosition, pos: pos} }

// ParseSeekTarget parses "beginning", "end", an RFC 3339 time, or a
// position "<partition>/<ms>-<seq>" (a bare "<ms>-<seq>" means partition 0).
func ParseSeekTarget(s string) (SeekTarget, error) {
	switch strings.ToLower(s) {
	case "beginning", "start", "0":
		return ToBeginning(), nil
	case "end", "$", "now":
		return ToEnd(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return ToTime(t), nil
	}
	if p, err := ParsePosition(s); err == nil {
		return ToPosition(p), nil
	}
	return SeekTarget{}, invalid("seek target %q: use beginning, end, an RFC 3339 time (2026-01-02T15:04:05Z) or a position <partition>/<ms>-<seq>", s)
}

// String formats the target as ParseSeekTarget reads it.
func (s SeekTarget) String() string {
	switch s.kind {
	case seekBeginning:
		return "beginning"
	case seekEnd:
		return "end"
	case seekTime:
		return s.t.UTC().Format(time.RFC3339Nano)
	case seekPosition:
		return s.pos.String()
	}
	return "(none)"
}

// lastID is the group last-delivered id that makes the next read start at
// the target on a partition, and whether the target concerns partition p.
func (s SeekTarget) lastID(p int) (string, bool) {
	switch s.kind {
	case seekBeginning:
		return "0-0", true
	case seekEnd:
		return "$", true
	case seekTime:
		return beforeMS(s.t.UnixMilli()), true
	case seekPosition:
		if p != s.pos.Partition {
			return "", false
		}
		ms, seq, ok := strings.Cut(s.pos.ID, "-")
		n, _ := strconv.ParseUint(seq, 10, 64)
		if !ok || n == 0 {
			m, _ := strconv.ParseInt(ms, 10, 64)
			return beforeMS(m), true
		}
		return ms + "-" + strconv.FormatUint(n-1, 10), true
	}
	return "", false
}

// beforeMS is the largest stream id before millisecond ms.
func beforeMS(ms int64) string {
	if ms <= 0 {
		return "0-0"
	}
	return strconv.FormatInt(ms-1, 10) + "-18446744073709551615"
}

func (s SeekTarget) check(t *topic) error {
	switch s.kind {
	case seekBeginning, seekEnd:
	case seekTime:
		if s.t.IsZero() {
			return invalid("seek time is zero; use ToTime with a time")
		}
	case seekPosition:
		if s.pos.Partition < 0 || s.pos.Partition >= len(t.parts) {
			return invalid("partition %d does not exist; topic %q has %d (0..%d)", s.pos.Partition, t.name, len(t.parts), len(t.parts)-1)
		}
		if !validStreamID(s.pos.ID) {
			return invalid("position %q is not a stream id; use <partition>/<ms>-<seq>", s.pos.ID)
		}
	default:
		return invalid("no seek target; use ToBeginning, ToEnd, ToTime or ToPosition")
	}
	return nil
}

// SeekResult says what SeekGroup did on each partition it moved.
type SeekResult struct {
	// Dropped counts pending entries before the new point that were
	// acknowledged without being handled (all partitions).
	Dropped    int64
	Partitions []PartitionSeek
}

// PartitionSeek is the outcome of a seek on one partition.
type PartitionSeek struct {
	Partition int
	// LastDeliveredID is the group's new position: the next event
	// delivered is the first after it.
	LastDeliveredID string
	Dropped         int64
}

// SeekGroup moves a consumer group of a topic to target on every partition
// (one partition for ToPosition). The group's next reads start there:
// events before it are not delivered again, events at or after it are
// delivered (again, when they were handled before). Pending entries before
// the new point are acknowledged unhandled and counted in the result.
// Running subscriptions of the group continue from the new point (after
// the events they had already read). Retries already scheduled for the
// group are left as they are.
func (c *Client) SeekGroup(ctx context.Context, topicName, group string, target SeekTarget) (SeekResult, error) {
	if err := c.checkOpen(); err != nil {
		return SeekResult{}, err
	}
	if err := ValidateName("group", group); err != nil {
		return SeekResult{}, err
	}
	t, err := c.topic(ctx, topicName, false)
	if err != nil {
		return SeekResult{}, err
	}
	if err := target.check(t); err != nil {
		return SeekResult{}, err
	}
	var res SeekResult
	for p, pk := range t.parts {
		id, ok := target.lastID(p)
		if !ok {
			continue
		}
		n, last, err := c.db.GroupSeek(ctx, pk, group, id)
		if rdb.IsNoGroup(err) {
			return res, fmt.Errorf("%w: %q on topic %q (partition %d)", ErrGroupNotFound, group, topicName, p)
		}
		if err != nil {
			return res, fmt.Errorf("herald: seek group %q on %s partition %d: %w", group, topicName, p, err)
		}
		res.Dropped += n
		res.Partitions = append(res.Partitions, PartitionSeek{Partition: p, LastDeliveredID: last, Dropped: n})
	}
	c.log.Info("group moved", "topic", topicName, "group", group, "to", target.String(), "dropped", res.Dropped)
	return res, nil
}

// CreateGroup creates a consumer group on every partition of a topic,
// starting at target (ToPosition: that partition there, the others at the
// beginning). A group that exists already keeps its place; CreateGroup then
// returns nil without moving it (use SeekGroup). Subscribe joins the group
// where it stands.
func (c *Client) CreateGroup(ctx context.Context, topicName, group string, target SeekTarget) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := ValidateName("group", group); err != nil {
		return err
	}
	t, err := c.topic(ctx, topicName, true)
	if err != nil {
		return err
	}
	if err := target.check(t); err != nil {
		return err
	}
	for p, pk := range t.parts {
		id, ok := target.lastID(p)
		if !ok {
			id = "0-0"
		}
		if err := c.db.EnsureGroup(ctx, pk, group, id); err != nil {
			return fmt.Errorf("herald: create group %q on %s partition %d: %w", group, topicName, p, err)
		}
	}
	return nil
}

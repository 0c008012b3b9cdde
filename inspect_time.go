package herald

import (
	"context"
	"fmt"
	"sort"

	"github.com/heraldbus/herald/internal/codec"
)

// GroupLoss is what a consumer group lost or gave up on, over a topic's
// partitions: events that hard retention caps (MaxLen, MaxAge) removed
// before the group handled them, and its dead letters.
type GroupLoss struct {
	Group string
	// TrimmedUnread counts events a cap trimmed before the group read them;
	// TrimmedPending those it had read but not acknowledged. Both are
	// counted by the retention pass (about once a second in every client
	// that has the topic loaded, or RetainNow).
	TrimmedUnread, TrimmedPending int64
	// DeadLetters counts the group's dead letters still stored.
	DeadLetters int64
	// DeadLettersExact is false when the dead-letter streams were longer
	// than Herald reads to count them (DeadLetters is then a lower bound).
	DeadLettersExact bool
}

// deadLetterCountLimit bounds the dead letters read per partition to count
// them per group.
const deadLetterCountLimit = 100000

// GroupLosses reports per consumer group of a topic the events that hard
// caps trimmed before the group handled them, and its dead letters. Groups
// with nothing to report are listed too when they exist on the topic.
func (c *Client) GroupLosses(ctx context.Context, topicName string) ([]GroupLoss, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	t, err := c.topic(ctx, topicName, false)
	if err != nil {
		return nil, err
	}
	by := map[string]*GroupLoss{}
	get := func(g string) *GroupLoss {
		if by[g] == nil {
			by[g] = &GroupLoss{Group: g, DeadLettersExact: true}
		}
		return by[g]
	}
	for p, pk := range t.parts {
		names, err := c.db.GroupNames(ctx, pk.Stream)
		if err != nil {
			return nil, fmt.Errorf("herald: groups of %s partition %d: %w", topicName, p, err)
		}
		for _, n := range names {
			get(n)
		}
		ls, err := c.db.Losses(ctx, pk)
		if err != nil {
			return nil, fmt.Errorf("herald: losses of %s partition %d: %w", topicName, p, err)
		}
		for g, l := range ls {
			gl := get(g)
			gl.TrimmedUnread += l.Unread
			gl.TrimmedPending += l.Pending
		}
		dl, all, err := c.db.DeadLetterCounts(ctx, pk, codec.FieldDeadGroup, deadLetterCountLimit)
		if err != nil {
			return nil, fmt.Errorf("herald: dead letters of %s partition %d: %w", topicName, p, err)
		}
		for g, n := range dl {
			gl := get(g)
			gl.DeadLetters += n
			gl.DeadLettersExact = gl.DeadLettersExact && all
		}
		if !all {
			for _, gl := range by {
				gl.DeadLettersExact = false
			}
		}
	}
	out := make([]GroupLoss, 0, len(by))
	for _, g := range by {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

package herald

import (
	"context"
	"time"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/rdb"
)

// lagAge is a group's lag on a partition in time: the age of the first
// entry after the group's last delivered position (a stream id carries its
// milliseconds), read with one XRANGE (exclusive start, COUNT 1). It is 0
// when the group has read everything (lag 0) or when the entry cannot be
// read.
func (c *Client) lagAge(ctx context.Context, pk rdb.PartKeys, lastDelivered string, lag int64, now time.Time) time.Duration {
	if lag == 0 {
		return 0
	}
	if lastDelivered == "" {
		lastDelivered = "0-0"
	}
	es, err := c.db.Range(ctx, pk.Stream, "("+lastDelivered, "+", 1)
	if err != nil || len(es) == 0 {
		return 0
	}
	t, err := codec.PositionTime(es[0].ID)
	if err != nil {
		return 0
	}
	return max(0, now.Sub(t))
}

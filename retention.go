package herald

import (
	"context"
	"time"
)

// Retention that respects consumer groups. With TopicConfig.TrimAcked the
// movers of the topic's clients (schedule.go) also run retention_trim.lua
// on every partition about once a second: it trims the entries that every
// group has acknowledged (XTRIM MINID below the smallest, over the groups,
// of the oldest pending id or the id after the last delivered one). Every
// topic with a hard cap (MaxLen, MaxAge) gets the same pass without the
// trim, to count per group what the caps removed before the group handled
// it (GroupLosses, `herald groups`).
//
// Redis 8.2 has XTRIM ... ACKED for the first part; Herald does not use it
// yet: the script works on Redis 7 and was measured there.

// retentionEvery is how often a mover runs the retention pass.
const retentionEvery = time.Second

func boolMeta(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// retains reports whether the topic needs the retention pass.
func (t *topic) retains() bool { return t.cfg.TrimAcked || t.cfg.MaxLen > 0 || t.cfg.MaxAge > 0 }

// retain runs the retention pass on every partition of the mover's topic
// and returns the number of entries trimmed.
func (m *delayMover) retain() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), delayCallTime)
	defer cancel()
	var n int64
	for p, r := range m.c.db.Retain(ctx, m.t.parts, m.t.cfg.TrimAcked) {
		if r.Err != nil {
			if m.alive() {
				m.c.log.Debug("retention pass", "topic", m.t.name, "partition", p, "err", r.Err)
			}
			continue
		}
		n += r.Trimmed
	}
	return n
}

// RetainNow runs the retention pass of a topic at once (it also runs by
// itself about once a second in every client that has the topic loaded):
// with TrimAcked, it trims what every group has acknowledged and returns
// how many events it trimmed; for every topic it updates the per-group
// counts of events that hard caps removed before the group handled them.
func (c *Client) RetainNow(ctx context.Context, topicName string) (int64, error) {
	if err := c.checkOpen(); err != nil {
		return 0, err
	}
	t, err := c.topic(ctx, topicName, false)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, r := range c.db.Retain(ctx, t.parts, t.cfg.TrimAcked) {
		if r.Err != nil {
			return n, r.Err
		}
		n += r.Trimmed
	}
	return n, nil
}

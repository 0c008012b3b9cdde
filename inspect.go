package herald

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/rdb"
)

// TopicInfo describes a topic and its partitions.
type TopicInfo struct {
	Name        string
	Config      TopicConfig
	Created     time.Time
	Length      int64 // events stored, all partitions
	MemoryBytes int64
	DeadLetters int64
	Partitions  []PartitionInfo
}

// PartitionInfo describes one partition.
type PartitionInfo struct {
	Partition   int
	Stream      string // the stream key
	Slot        int    // its cluster hash slot
	Node        string // the master serving it (on standalone: the server)
	Length      int64
	FirstID     string
	LastID      string
	MemoryBytes int64
	DeadLetters int64
}

// Topics lists every topic with its details.
func (c *Client) Topics(ctx context.Context) ([]TopicInfo, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	names, err := c.db.TopicNames(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]TopicInfo, 0, len(names))
	for _, n := range names {
		ti, err := c.TopicInfo(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, ti)
	}
	return out, nil
}

// TopicInfo describes one topic.
func (c *Client) TopicInfo(ctx context.Context, name string) (TopicInfo, error) {
	if err := c.checkOpen(); err != nil {
		return TopicInfo{}, err
	}
	t, err := c.topic(ctx, name, false)
	if err != nil {
		return TopicInfo{}, err
	}
	ti := TopicInfo{Name: name, Config: t.cfg, Created: t.created}
	ranges, err := c.db.SlotRanges(ctx)
	if err != nil {
		return ti, err
	}
	standalone := ""
	for _, addr := range c.db.NodeAddrs() {
		standalone = addr
	}
	for p, pk := range t.parts {
		si, err := c.db.StreamInfo(ctx, pk.Stream)
		if err != nil {
			return ti, err
		}
		dl, err := c.db.StreamInfo(ctx, pk.DLQ)
		if err != nil {
			return ti, err
		}
		slot := rdb.KeySlot(pk.Stream)
		node := standalone
		if ranges != nil {
			node = rdb.MasterOf(ranges, slot)
		}
		ti.Partitions = append(ti.Partitions, PartitionInfo{Partition: p, Stream: pk.Stream, Slot: slot, Node: node, Length: si.Length,
			FirstID: si.FirstID, LastID: si.LastID, MemoryBytes: si.MemoryBytes, DeadLetters: dl.Length})
		ti.Length += si.Length
		ti.MemoryBytes += si.MemoryBytes
		ti.DeadLetters += dl.Length
	}
	return ti, nil
}

// GroupInfo describes a consumer group over all partitions of a topic.
type GroupInfo struct {
	Name       string
	Consumers  int64 // the most seen on one partition, or the live members of an ordered group if more
	Pending    int64 // delivered, not yet acknowledged (partition and retry streams)
	Lag        int64 // events not yet delivered, counted in the streams; -1 when unknown (LagUnknown says why)
	LagUnknown string
	// LagEstimated is set when some partition's lag is Redis's own counter:
	// counting was skipped (more than rdb.LagCap/2 entries on both sides of
	// the group's position); a retention trim of unread entries makes that
	// counter too high.
	LagEstimated     bool
	ScheduledRetries int64
	OldestPending    time.Duration // age of the oldest pending entry
	LagAge           time.Duration // age of the oldest event not yet delivered, the most over the partitions (inspect_lag.go)
	Members          []string      // live consumers of an ordered group (heartbeats)
	Partitions       []GroupPartitionInfo
}

// GroupPartitionInfo is a group's state on one partition.
type GroupPartitionInfo struct {
	Partition       int
	Pending         int64 // partition and retry stream
	Lag             int64 // -1 when unknown
	LagUnknown      string
	LagEstimated    bool // Redis's own counter, not counted (see GroupInfo.LagEstimated)
	LastDeliveredID string
	LagAge          time.Duration // age of the first event after LastDeliveredID; 0 when none
	// Owner is the consumer holding the partition's lease (ordered
	// subscriptions), "" when none; LeaseAge is how long it has held it and
	// LeaseLeft how long until it runs out unless renewed.
	Owner      string
	OwnerToken int64
	LeaseAge   time.Duration
	LeaseLeft  time.Duration
}

// Groups describes the consumer groups of a topic. Lag is counted in the
// streams (entries after the group's last delivered position), not taken
// from Redis's own figure, which retention trims and failovers leave wrong.
func (c *Client) Groups(ctx context.Context, topicName string) ([]GroupInfo, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	t, err := c.topic(ctx, topicName, false)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	// The partitions are asked concurrently (a few commands each; 16 at a
	// time), then merged in partition order.
	res := make([][]partGroup, len(t.parts))
	errs := make([]error, len(t.parts))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for p, pk := range t.parts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			res[p], errs[p] = c.groupsOn(ctx, p, pk, now)
		}()
	}
	wg.Wait()
	byName := map[string]*GroupInfo{}
	for p := range t.parts {
		if errs[p] != nil {
			return nil, errs[p]
		}
		for _, pg := range res[p] {
			gi := byName[pg.name]
			if gi == nil {
				gi = &GroupInfo{Name: pg.name}
				byName[pg.name] = gi
				if ms, err := c.db.Members(ctx, t.parts[0], pg.name); err == nil {
					gi.Members = ms
				}
			}
			gi.Consumers = max(gi.Consumers, pg.consumers)
			for _, id := range pg.oldest {
				gi.agePending(now, id)
			}
			gi.Pending += pg.pi.Pending
			gi.ScheduledRetries += pg.scheduled
			gi.LagAge = max(gi.LagAge, pg.pi.LagAge)
			gi.Partitions = append(gi.Partitions, pg.pi)
		}
	}
	out := make([]GroupInfo, 0, len(byName))
	for _, g := range byName {
		g.sum()
		g.Consumers = max(g.Consumers, int64(len(g.Members)))
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// partGroup is one group's state on one partition.
type partGroup struct {
	name      string
	consumers int64
	scheduled int64
	oldest    []string // oldest pending ids (partition and retry stream)
	pi        GroupPartitionInfo
}

// groupsOn reads the groups of one partition.
func (c *Client) groupsOn(ctx context.Context, p int, pk rdb.PartKeys, now time.Time) ([]partGroup, error) {
	gs, err := c.db.Groups(ctx, pk.Stream)
	if err != nil {
		return nil, err
	}
	out := make([]partGroup, 0, len(gs))
	for _, g := range gs {
		pg := partGroup{name: g.Name, consumers: g.Consumers, oldest: []string{g.OldestPendingID},
			pi: GroupPartitionInfo{Partition: p, Pending: g.Pending, LastDeliveredID: g.LastDeliveredID}}
		rs, _ := c.db.Groups(ctx, pk.Retry(g.Name))
		for _, r := range rs {
			if r.Name == g.Name {
				pg.pi.Pending += r.Pending
				pg.oldest = append(pg.oldest, r.OldestPendingID)
			}
		}
		pg.scheduled, _ = c.db.ScheduledRetries(ctx, pk, g.Name)
		pg.pi.Lag, pg.pi.LagEstimated, pg.pi.LagUnknown = c.partLag(ctx, pk, g.LastDeliveredID, g.Lag)
		pg.pi.LagAge = c.lagAge(ctx, pk, g.LastDeliveredID, pg.pi.Lag, now)
		if l, ok, err := c.db.LeaseOf(ctx, pk, g.Name); err == nil && ok {
			pg.pi.Owner, pg.pi.OwnerToken = l.Consumer, l.Token
			pg.pi.LeaseAge = max(0, now.Sub(time.UnixMilli(l.AcquiredMS)))
			pg.pi.LeaseLeft = time.Duration(max(0, l.TTLMS)) * time.Millisecond
		}
		out = append(out, pg)
	}
	return out, nil
}

// partLag counts a group's true lag on a partition. When the group's
// position is far from both ends of the stream, counting would hold Redis
// too long: then Redis's own counter (redisLag, -1 when Redis has none) is
// returned as an estimate.
func (c *Client) partLag(ctx context.Context, pk rdb.PartKeys, lastDelivered string, redisLag int64) (lag int64, estimated bool, unknown string) {
	if lastDelivered == "" {
		lastDelivered = "0-0"
	}
	lag, ok, err := c.db.GroupLag(ctx, pk.Stream, lastDelivered)
	switch {
	case err != nil:
		return -1, false, "counting failed: " + err.Error()
	case !ok && redisLag >= 0:
		return redisLag, true, ""
	case !ok:
		return -1, false, fmt.Sprintf("more than %d entries on both sides of the group's position (not counted) and no figure from Redis", rdb.LagCap/2)
	}
	return lag, false, ""
}

// sum totals the partitions' lag.
func (g *GroupInfo) sum() {
	for _, p := range g.Partitions {
		switch {
		case p.Lag < 0 || g.Lag < 0:
			if g.Lag >= 0 {
				g.LagUnknown = fmt.Sprintf("partition %d: %s", p.Partition, p.LagUnknown)
			}
			g.Lag = -1
		default:
			g.Lag += p.Lag
		}
		g.LagEstimated = g.LagEstimated || p.LagEstimated
	}
}

func (g *GroupInfo) agePending(now time.Time, id string) {
	if id == "" {
		return
	}
	if t, err := codec.PositionTime(id); err == nil && now.Sub(t) > g.OldestPending {
		g.OldestPending = now.Sub(t)
	}
}

// DeleteGroup removes a consumer group from every partition of a topic.
func (c *Client) DeleteGroup(ctx context.Context, topicName, group string) error {
	t, err := c.topic(ctx, topicName, false)
	if err != nil {
		return err
	}
	for _, pk := range t.parts {
		if err := c.db.DestroyGroup(ctx, pk, group); err != nil {
			return err
		}
	}
	return nil
}

// Query selects events for inspection calls. The zero value selects
// everything, up to a default limit.
type Query struct {
	// Partitions limits the search; empty means all.
	Partitions []int
	// From and To bound stream positions (inclusive), e.g. "1700000000000-0"
	// or just milliseconds; empty means the start and the end.
	From, To string
	// Limit is the most events returned (default 100).
	Limit int
	// Group selects dead letters of one group.
	Group string
	// IDs selects dead letters by position ("<partition>/<id>").
	IDs []string
}

// StoredEvent is an event read from a stream.
type StoredEvent struct {
	Event
	Topic     string
	Partition int
	Position  string
}

// DeadLetter is an event that a group gave up on.
type DeadLetter struct {
	StoredEvent
	Group    string
	Error    string
	Attempts int
	Origin   string // position in the partition stream
	Failed   time.Time
}

func (f *Query) parts(t *topic) ([]int, error) {
	if len(f.Partitions) == 0 {
		ps := make([]int, len(t.parts))
		for i := range ps {
			ps[i] = i
		}
		return ps, nil
	}
	for _, p := range f.Partitions {
		if p < 0 || p >= len(t.parts) {
			return nil, invalid("partition %d does not exist; topic %q has %d (0..%d)", p, t.name, len(t.parts), len(t.parts)-1)
		}
	}
	return f.Partitions, nil
}

// Validate reports what is wrong with q (an error wrapping ErrInvalid), or
// nil, without connecting: its positions, ids and partition numbers (that a
// partition exists is checked against the topic when q is used).
func (q Query) Validate() error {
	if _, _, _, err := q.bounds(); err != nil {
		return err
	}
	if q.Limit < 0 {
		return invalid("limit %d is negative; use a positive number (0: 100)", q.Limit)
	}
	for _, p := range q.Partitions {
		if p < 0 {
			return invalid("partition %d is negative", p)
		}
	}
	for _, id := range q.IDs {
		if _, err := ParsePosition(id); err != nil {
			return err
		}
	}
	return nil
}

func (f *Query) bounds() (string, string, int, error) {
	from, to, limit := "-", "+", f.Limit
	if f.From != "" {
		if !validStreamID(f.From) {
			return "", "", 0, invalid("from %q is not a stream position; use <ms>-<seq> or <ms>", f.From)
		}
		from = f.From
	}
	if f.To != "" {
		if !validStreamID(f.To) {
			return "", "", 0, invalid("to %q is not a stream position; use <ms>-<seq> or <ms>", f.To)
		}
		to = f.To
	}
	if limit <= 0 {
		limit = 100
	}
	return from, to, limit, nil
}

// Events reads stored events in position order across partitions.
func (c *Client) Events(ctx context.Context, topicName string, f Query) ([]StoredEvent, error) {
	es, err := c.scan(ctx, topicName, f, func(pk rdb.PartKeys) string { return pk.Stream })
	if err != nil {
		return nil, err
	}
	out := make([]StoredEvent, len(es))
	for i, e := range es {
		out[i] = e.StoredEvent
	}
	return out, nil
}

// DeadLetters lists dead letters in position order.
func (c *Client) DeadLetters(ctx context.Context, topicName string, f Query) ([]DeadLetter, error) {
	return c.scan(ctx, topicName, f, func(pk rdb.PartKeys) string { return pk.DLQ })
}

func (c *Client) scan(ctx context.Context, topicName string, f Query, key func(rdb.PartKeys) string) ([]DeadLetter, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	t, err := c.topic(ctx, topicName, false)
	if err != nil {
		return nil, err
	}
	ps, err := f.parts(t)
	if err != nil {
		return nil, err
	}
	from, to, limit, err := f.bounds()
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, id := range f.IDs {
		p, err := ParsePosition(id)
		if err != nil {
			return nil, err
		}
		want[p.String()] = true
	}
	var out []DeadLetter
	for _, p := range ps {
		start := from
		for {
			es, err := c.db.Range(ctx, key(t.parts[p]), start, to, int64(limit))
			if err != nil {
				return nil, err
			}
			for _, e := range es {
				ev, m, _ := codec.Decode(e.Pairs, e.ID) // a malformed entry still shows what could be read
				dl := DeadLetter{StoredEvent: StoredEvent{Event: Event(ev), Topic: topicName, Partition: p, Position: e.ID},
					Group: m.DeadGroup, Error: m.DeadError, Attempts: m.DeadAttempt, Origin: m.DeadPos, Failed: m.DeadTime}
				if f.Group != "" && dl.Group != f.Group {
					continue
				}
				if len(want) > 0 && !want[fmt.Sprintf("%d/%s", p, e.ID)] {
					continue
				}
				out = append(out, dl)
			}
			// Filters may skip entries: page on until the limit or the end.
			if len(es) < limit || (f.Group == "" && len(want) == 0) || len(out) >= limit*len(ps) {
				break
			}
			start = "(" + es[len(es)-1].ID
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return StreamIDLess(out[i].Position, out[j].Position) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// RedriveDeadLetters moves the selected dead letters back to their groups,
// where they are delivered again with the attempt count reset. It returns
// how many were moved.
func (c *Client) RedriveDeadLetters(ctx context.Context, topicName string, f Query) (int, error) {
	dls, err := c.DeadLetters(ctx, topicName, f)
	if err != nil {
		return 0, err
	}
	t, _ := c.topic(ctx, topicName, false)
	n := 0
	for _, dl := range dls {
		pk := t.parts[dl.Partition]
		names, err := c.db.GroupNames(ctx, pk.Stream)
		if err != nil {
			return n, err
		}
		if dl.Group == "" || !contains(names, dl.Group) {
			return n, fmt.Errorf("%w: dead letter %d/%s belongs to group %q, which does not exist on topic %q",
				ErrGroupNotFound, dl.Partition, dl.Position, dl.Group, topicName)
		}
		ok, err := c.db.Redrive(ctx, pk, dl.Group, dl.Position)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// DeleteDeadLetters deletes the selected dead letters and returns how many.
func (c *Client) DeleteDeadLetters(ctx context.Context, topicName string, f Query) (int, error) {
	dls, err := c.DeadLetters(ctx, topicName, f)
	if err != nil {
		return 0, err
	}
	t, _ := c.topic(ctx, topicName, false)
	n := 0
	for _, dl := range dls {
		k, err := c.db.Delete(ctx, t.parts[dl.Partition].DLQ, dl.Position)
		if err != nil {
			return n, err
		}
		n += int(k)
	}
	return n, nil
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

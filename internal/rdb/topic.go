package rdb

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// CreateTopic stores a topic's metadata unless it exists, and registers the
// name. It returns the stored metadata and whether this call created it.
func (db *DB) CreateTopic(ctx context.Context, name string, meta map[string]string) (map[string]string, bool, error) {
	args := make([]string, 0, 2*len(meta))
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k, meta[k])
	}
	arr, err := scriptTopicNew.Exec(ctx, db.c, []string{db.Keys.Topic(name)}, args).AsStrSlice()
	if err != nil {
		return nil, false, err
	}
	if len(arr) == 0 || len(arr)%2 != 1 {
		return nil, false, fmt.Errorf("topic_create: unexpected reply")
	}
	created := arr[len(arr)-1] == "created"
	out := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr)-1; i += 2 {
		out[arr[i]] = arr[i+1]
	}
	// The registry and the tombstone live in other slots; adding twice is
	// harmless, and a topic created again is no longer deleted.
	cmds := rueidis.Commands{db.c.B().Sadd().Key(db.Keys.Topics()).Member(name).Build()}
	if created {
		cmds = append(cmds, db.c.B().Del().Key(db.Keys.TopicDeleted(name)).Build())
	}
	for _, r := range db.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return nil, false, err
		}
	}
	return out, created, nil
}

// TopicTombstoneTTL is how long DeleteTopic's tombstone lives (Keys.TopicDeleted).
const TopicTombstoneTTL = 24 * time.Hour

// TopicWasDeleted reports whether DeleteTopic deleted the topic within
// TopicTombstoneTTL and nothing created it since.
func (db *DB) TopicWasDeleted(ctx context.Context, name string) (bool, error) {
	n, err := db.c.Do(ctx, db.c.B().Exists().Key(db.Keys.TopicDeleted(name)).Build()).AsInt64()
	return n > 0, err
}

// LoadTopic reads a topic's metadata; found is false when it does not exist.
func (db *DB) LoadTopic(ctx context.Context, name string) (map[string]string, bool, error) {
	m, err := db.c.Do(ctx, db.c.B().Hgetall().Key(db.Keys.Topic(name)).Build()).AsStrMap()
	if err != nil {
		return nil, false, err
	}
	return m, len(m) > 0, nil
}

// TopicNames lists registered topics, sorted.
func (db *DB) TopicNames(ctx context.Context) ([]string, error) {
	names, err := db.c.Do(ctx, db.c.B().Smembers().Key(db.Keys.Topics()).Build()).AsStrSlice()
	sort.Strings(names)
	return names, err
}

// DeleteTopic removes a topic's metadata, registry entry and every key of its
// partitions: streams, dead letters, each group's retry keys, producer
// states and dedupe keys (found with SCAN on every node, since their names
// carry producer and event ids).
func (db *DB) DeleteTopic(ctx context.Context, name string, parts []PartKeys) error {
	bases := map[string]bool{}
	for _, pk := range parts {
		bases[pk.Base] = true
		groups, _ := db.GroupNames(ctx, pk.Stream)
		keys := []string{pk.Stream, pk.DLQ}
		for _, g := range groups {
			keys = append(keys, pk.Retry(g), pk.Schedule(g))
		}
		for _, k := range keys {
			if err := db.c.Do(ctx, db.c.B().Del().Key(k).Build()).Error(); err != nil {
				return err
			}
		}
	}
	match := db.Keys.NS + ":{" + name + "/*"
	for _, n := range db.nodes() {
		cursor := uint64(0)
		for {
			e, err := n.Do(ctx, n.B().Scan().Cursor(cursor).Match(match).Count(1000).Build()).AsScanEntry()
			if err != nil {
				break // a replica or an unreachable node: the masters are scanned too
			}
			for _, k := range e.Elements {
				if i := strings.Index(k, "}:"); i > 0 && bases[k[:i+2]] {
					db.c.Do(ctx, db.c.B().Del().Key(k).Build())
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	cmds := rueidis.Commands{
		db.c.B().Set().Key(db.Keys.TopicDeleted(name)).Value(strconv.FormatInt(time.Now().UnixMilli(), 10)).Ex(TopicTombstoneTTL).Build(),
		db.c.B().Del().Key(db.Keys.Topic(name)).Build(),
		db.c.B().Srem().Key(db.Keys.Topics()).Member(name).Build(),
	}
	for _, r := range db.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// StreamInfo is what Herald reads of one stream for inspection.
type StreamInfo struct {
	Length      int64
	FirstID     string
	LastID      string
	MemoryBytes int64
}

// StreamInfo reads length, first and last entry and memory of a stream.
func (db *DB) StreamInfo(ctx context.Context, key string) (StreamInfo, error) {
	rs := db.c.DoMulti(ctx,
		db.c.B().Xlen().Key(key).Build(),
		db.c.B().Xrange().Key(key).Start("-").End("+").Count(1).Build(),
		db.c.B().Xrevrange().Key(key).End("+").Start("-").Count(1).Build(),
		// Sampled: SAMPLES 0 (exact) walks every node of the stream, 0.6 ms
		// of Redis per 1M-entry stream; 16 samples cost ~5 us (docs/dashboard.md).
		db.c.B().MemoryUsage().Key(key).Samples(16).Build())
	var si StreamInfo
	var err error
	if si.Length, err = rs[0].AsInt64(); err != nil {
		return si, err
	}
	if es, err := parseEntries(key, rs[1]); err == nil && len(es) > 0 {
		si.FirstID = es[0].ID
	}
	if es, err := parseEntries(key, rs[2]); err == nil && len(es) > 0 {
		si.LastID = es[0].ID
	}
	si.MemoryBytes, _ = rs[3].AsInt64() // nil when the key is missing; MEMORY may be disabled
	return si, nil
}

// GroupNames lists the consumer groups of a stream.
func (db *DB) GroupNames(ctx context.Context, stream string) ([]string, error) {
	gs, err := db.Groups(ctx, stream)
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = g.Name
	}
	return names, err
}

// GroupInfo is one consumer group on one stream.
type GroupInfo struct {
	Name            string
	Consumers       int64
	Pending         int64
	LastDeliveredID string
	Lag             int64 // -1 when Redis cannot tell (e.g. after a failover)
	OldestPendingID string
}

// Groups reads XINFO GROUPS of a stream, plus the oldest pending id of each.
func (db *DB) Groups(ctx context.Context, stream string) ([]GroupInfo, error) {
	arr, err := db.c.Do(ctx, db.c.B().XinfoGroups().Key(stream).Build()).ToArray()
	if err != nil {
		if isNoSuchKey(err) {
			return nil, nil
		}
		return nil, err
	}
	out := make([]GroupInfo, 0, len(arr))
	for _, g := range arr {
		m, err := g.AsMap()
		if err != nil {
			return nil, err
		}
		gi := GroupInfo{Lag: -1}
		str := func(k string) string { v := m[k]; s, _ := v.ToString(); return s }
		num := func(k string) int64 { v := m[k]; n, _ := v.AsInt64(); return n }
		gi.Name, gi.Consumers, gi.Pending, gi.LastDeliveredID = str("name"), num("consumers"), num("pending"), str("last-delivered-id")
		if lag, ok := m["lag"]; ok && !lag.IsNil() {
			gi.Lag, _ = lag.AsInt64()
		}
		if gi.Pending > 0 {
			if p, err := db.c.Do(ctx, db.c.B().Xpending().Key(stream).Group(gi.Name).Build()).ToArray(); err == nil && len(p) > 1 {
				gi.OldestPendingID, _ = p[1].ToString()
			}
		}
		out = append(out, gi)
	}
	return out, nil
}

// ScheduledRetries counts a group's scheduled retries on a partition.
func (db *DB) ScheduledRetries(ctx context.Context, pk PartKeys, group string) (int64, error) {
	return db.c.Do(ctx, db.c.B().Zcard().Key(pk.Schedule(group)).Build()).AsInt64()
}

// DestroyGroup removes a group from a partition, with its retry keys and
// its retention loss counters (a group made again under the name starts
// from none).
func (db *DB) DestroyGroup(ctx context.Context, pk PartKeys, group string) error {
	cmds := rueidis.Commands{
		db.c.B().XgroupDestroy().Key(pk.Stream).Group(group).Build(),
		db.c.B().Del().Key(pk.Retry(group)).Build(),
		db.c.B().Del().Key(pk.Schedule(group)).Build(),
		db.c.B().Hdel().Key(pk.Losses()).Field("p:"+group, "u:"+group, "w:"+group).Build(),
	}
	for _, r := range db.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil && !isNoSuchKey(err) {
			return err
		}
	}
	return nil
}

// isNoSuchKey reports "ERR no such key" (rueidis drops the "ERR " prefix).
func isNoSuchKey(err error) bool {
	return replyPrefix(err, "no such key") || replyPrefix(err, "ERR no such key")
}

// Itoa is a small helper for metadata maps.
func Itoa(n int64) string { return strconv.FormatInt(n, 10) }

package herald

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

// topic is the client's cached view of one topic and its partition writers.
type topic struct {
	name    string
	cfg     TopicConfig
	created time.Time
	tags    []string
	parts   []rdb.PartKeys
	writers []*partWriter
	rr      atomic.Uint64
	down    []atomic.Bool  // per partition: the last append failed transiently (placement.go)
	downAt  []atomic.Int64 // per partition: nanotime of its last probe or failure (placement.go)
	sticky  atomic.Int64   // keyless events' current partition
	stuck   atomic.Int64   // keyless events sent to it since it was chosen
	stuckAt atomic.Int64   // when it was chosen (nanotime)
}

// topicMeta encodes a topic's configuration for its metadata hash.
func topicMeta(name string, cfg TopicConfig, tags []string, now time.Time) map[string]string {
	da := "0"
	if cfg.DedupeAll {
		da = "1"
	}
	return map[string]string{
		"version":         "1",
		"partitions":      strconv.Itoa(cfg.Partitions),
		"tags":            strings.Join(tags, ","),
		"durability":      cfg.Durability.String(),
		"maxlen":          strconv.FormatInt(cfg.MaxLen, 10),
		"maxage_ms":       strconv.FormatInt(cfg.MaxAge.Milliseconds(), 10),
		"dedupe_ms":       strconv.FormatInt(cfg.DedupeWindow.Milliseconds(), 10),
		"dedupe_all":      da,
		"max_event_bytes": strconv.Itoa(cfg.MaxEventBytes),
		"created_ms":      strconv.FormatInt(now.UnixMilli(), 10),
		"trim_acked":      boolMeta(cfg.TrimAcked), // retention.go
	}
}

func (c *Client) topicFromMeta(name string, m map[string]string) (*topic, error) {
	num := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	t := &topic{name: name, cfg: TopicConfig{
		Partitions:    int(num("partitions")),
		MaxLen:        num("maxlen"),
		MaxAge:        time.Duration(num("maxage_ms")) * time.Millisecond,
		DedupeWindow:  time.Duration(num("dedupe_ms")) * time.Millisecond,
		DedupeAll:     m["dedupe_all"] == "1",
		MaxEventBytes: int(num("max_event_bytes")),
		TrimAcked:     m["trim_acked"] == "1",
	}, created: time.UnixMilli(num("created_ms"))}
	t.cfg.Durability, _ = ParseDurability(m["durability"])
	t.tags = strings.Split(m["tags"], ",")
	if t.cfg.Partitions < 1 || len(t.tags) != t.cfg.Partitions {
		return nil, fmt.Errorf("herald: topic %q has corrupt metadata (partitions=%q, %d tags)", name, m["partitions"], len(t.tags))
	}
	if err := t.cfg.fill(); err != nil {
		return nil, err
	}
	t.rr.Store(rand.Uint64()) // spread keyless events from many short-lived clients too
	t.parts = make([]rdb.PartKeys, len(t.tags))
	t.writers = make([]*partWriter, len(t.tags))
	t.down = make([]atomic.Bool, len(t.tags))
	t.downAt = make([]atomic.Int64, len(t.tags))
	for i, tag := range t.tags {
		t.parts[i] = c.db.Keys.Part(tag)
		t.writers[i] = &partWriter{c: c, t: t, p: i, keys: t.parts[i], idle: lanes}
	}
	return t, nil
}

// topics caches topic metadata.
type topics struct {
	mu sync.RWMutex
	m  map[string]*topic
	// snap is a copy of m for lookups without a lock (every publish looks
	// its topic up); it is replaced, never changed, under mu.
	snap atomic.Pointer[map[string]*topic]
}

// publishLocked replaces snap with a copy of m. mu must be held.
func (ts *topics) publishLocked() {
	cp := make(map[string]*topic, len(ts.m))
	for k, v := range ts.m {
		cp[k] = v
	}
	ts.snap.Store(&cp)
}

// CreateTopic creates a topic, or returns nil when it already exists (its
// stored configuration then stays as it was).
func (c *Client) CreateTopic(ctx context.Context, name string, cfg TopicConfig) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if err := ValidateName("topic", name); err != nil {
		return err
	}
	if err := cfg.fill(); err != nil {
		return err
	}
	_, err := c.createTopic(ctx, name, cfg)
	return err
}

func (c *Client) createTopic(ctx context.Context, name string, cfg TopicConfig) (*topic, error) {
	// On a cluster, partitions are placed evenly over the masters by their
	// hash tags; the tags are stored, so they never change under the topic.
	ranges, err := c.db.SlotRanges(ctx)
	if err != nil {
		return nil, fmt.Errorf("herald: create topic %q: read the cluster's slots: %w", name, err)
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = defaultPartitions(ranges)
	}
	m, created, err := c.db.CreateTopic(ctx, name, topicMeta(name, cfg, rdb.BalancedTags(name, cfg.Partitions, ranges), time.Now()))
	if err != nil {
		return nil, fmt.Errorf("herald: create topic %q: %w", name, err)
	}
	if created {
		c.log.Info("topic created", "topic", name, "partitions", cfg.Partitions)
	}
	return c.cacheTopic(name, m)
}

// defaultPartitions is the partition count of a topic created without one:
// DefaultPartitions on a standalone Redis (no slot ranges), else
// PartitionsPerMaster for each master that serves slots.
func defaultPartitions(ranges []rdb.SlotRange) int {
	masters := map[string]bool{}
	for _, r := range ranges {
		masters[r.Master] = true
	}
	if len(masters) == 0 {
		return DefaultPartitions
	}
	return min(PartitionsPerMaster*len(masters), MaxPartitions)
}

func (c *Client) cacheTopic(name string, m map[string]string) (*topic, error) {
	t, err := c.topicFromMeta(name, m)
	if err != nil {
		return nil, err
	}
	c.topics.mu.Lock()
	defer c.topics.mu.Unlock()
	if old, ok := c.topics.m[name]; ok {
		if old.sameAs(t) {
			return old, nil
		}
		// The stored topic is another one: it was deleted and created again
		// (maybe with another partition count) since this client cached it.
		c.log.Warn("topic was deleted and created again; this client's cached layout is replaced",
			"topic", name, "partitions", t.cfg.Partitions, "cached_partitions", old.cfg.Partitions)
		for _, w := range old.writers {
			w.closeFences()
		}
	}
	c.topics.m[name] = t
	c.topics.publishLocked()
	c.startDelayMover(t)
	return t, nil
}

// sameAs reports whether u describes the same topic as t: the same
// creation and the same partitions (a topic deleted and created again
// differs in its creation time).
func (t *topic) sameAs(u *topic) bool {
	return t.created.Equal(u.created) && slices.Equal(t.tags, u.tags)
}

// checkCached drops t from the cache when its stored metadata describes
// another topic (deleted and created again by another client, maybe with
// another partition count): the next publish or subscription loads what is
// stored now. Metadata that is gone leaves the cache as it is: it may be a
// deletion, or a Redis that restarted without persistence, whose topics
// the running subscriptions restore from their cached layout.
func (c *Client) checkCached(ctx context.Context, t *topic) {
	m, found, err := c.db.LoadTopic(ctx, t.name)
	if err != nil {
		return
	}
	why := "topic was deleted and created again by another client; this client's cached layout is dropped"
	if !found {
		// Gone: deleted (DeleteTopic's tombstone says so), or a Redis that
		// restarted without persistence, whose topics running
		// subscriptions restore (restoreTopic).
		if deleted, err := c.db.TopicWasDeleted(ctx, t.name); err != nil || !deleted {
			return
		}
		why = "topic was deleted by another client; this client's cached layout is dropped"
	} else if u, err := c.topicFromMeta(t.name, m); err != nil || u.sameAs(t) {
		return
	}
	c.topics.mu.Lock()
	if c.topics.m[t.name] == t {
		delete(c.topics.m, t.name)
		c.topics.publishLocked()
		c.log.Warn(why, "topic", t.name)
	}
	c.topics.mu.Unlock()
	for _, w := range t.writers {
		w.closeFences()
	}
}

// cachedTopic returns the cached topic, or nil when it is not loaded yet.
// It takes no lock: every publish looks its topic up here.
func (c *Client) cachedTopic(name string) *topic {
	if m := c.topics.snap.Load(); m != nil {
		return (*m)[name]
	}
	return nil
}

// topic returns the cached topic, loading it, or creating it when create is set.
func (c *Client) topic(ctx context.Context, name string, create bool) (*topic, error) {
	if t := c.cachedTopic(name); t != nil {
		return t, nil
	}
	if err := ValidateName("topic", name); err != nil {
		return nil, err
	}
	m, found, err := c.db.LoadTopic(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("herald: load topic %q: %w", name, err)
	}
	if found {
		return c.cacheTopic(name, m)
	}
	if !create || c.cfg.DisableAutoCreate {
		return nil, fmt.Errorf("%w: %q", ErrTopicNotFound, name)
	}
	return c.createTopic(ctx, name, c.cfg.DefaultTopic)
}

// DeleteTopic deletes a topic with all its events, groups and dead letters.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	t, err := c.topic(ctx, name, false)
	if err != nil {
		return err
	}
	if err := c.db.DeleteTopic(ctx, name, t.parts); err != nil {
		return fmt.Errorf("herald: delete topic %q: %w", name, err)
	}
	c.topics.mu.Lock()
	delete(c.topics.m, name)
	c.topics.publishLocked()
	c.topics.mu.Unlock()
	for _, w := range t.writers {
		w.closeFences()
	}
	return nil
}

// restoreTopic writes a cached topic's metadata back (after a Redis restart
// without persistence lost it). Existing metadata is left as is.
func (c *Client) restoreTopic(ctx context.Context, t *topic) {
	m := topicMeta(t.name, t.cfg, t.tags, t.created)
	if _, created, err := c.db.CreateTopic(ctx, t.name, m); err == nil && created {
		c.log.Warn("topic metadata was missing (Redis restarted without persistence?); restored", "topic", t.name)
	}
}

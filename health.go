package herald

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// health is the client's view of which partitions accept writes. A
// partition whose last append failed with a transient error (connection
// refused, CLUSTERDOWN, a failover in progress) is unhealthy until an append
// succeeds; keyless events avoid unhealthy partitions while any healthy one
// is left, so they keep flowing while one shard fails over. Keyed events
// wait for their own partition (order per key) within the publish timeout.
type health struct {
	mu      sync.Mutex
	failing map[*topic]map[int]time.Time
}

// PartitionHealth is one partition that the client saw failing.
type PartitionHealth struct {
	Topic     string
	Partition int
	Since     time.Time
}

// NodeHealth is one Redis node as the client sees it now.
type NodeHealth struct {
	Addr    string
	Role    string // "master", "slave" (replica), or "" when unreachable
	Latency time.Duration
	Err     string // why the node did not answer
}

// Health is the client's view of the deployment: every node's ping latency
// and role, and the partitions whose last append failed (failover in
// progress, shard down).
type Health struct {
	Cluster           bool
	Nodes             []NodeHealth
	FailingPartitions []PartitionHealth
	DegradedPublishes int64 // Replicated publishes that got fewer replicas than asked
}

// Health pings every node and reports the client's health view.
func (c *Client) Health(ctx context.Context) (Health, error) {
	if err := c.checkOpen(); err != nil {
		return Health{}, err
	}
	h := Health{Cluster: c.db.IsCluster(), DegradedPublishes: c.stats.degraded.Load()}
	for _, r := range c.db.NodeRoles(ctx, 2*time.Second) {
		nh := NodeHealth{Addr: r.Addr, Role: r.Role, Latency: r.Latency}
		if r.Err != nil {
			nh.Err = r.Err.Error()
		}
		h.Nodes = append(h.Nodes, nh)
	}
	sort.Slice(h.Nodes, func(i, j int) bool { return h.Nodes[i].Addr < h.Nodes[j].Addr })
	c.health.mu.Lock()
	for t, ps := range c.health.failing {
		for p, since := range ps {
			h.FailingPartitions = append(h.FailingPartitions, PartitionHealth{Topic: t.name, Partition: p, Since: since})
		}
	}
	c.health.mu.Unlock()
	sort.Slice(h.FailingPartitions, func(i, j int) bool {
		a, b := h.FailingPartitions[i], h.FailingPartitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return h, nil
}

// ClientStats are counters of a Client since it was created.
type ClientStats struct {
	DegradedPublishes int64 // Replicated publishes acknowledged by fewer replicas than asked
}

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats { return ClientStats{DegradedPublishes: c.stats.degraded.Load()} }

type clientStats struct {
	degraded atomic.Int64
}

package herald

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
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

	// MemoryUsed is the node's used_memory (INFO memory) in bytes and
	// MemoryMax its maxmemory (0: no limit); both 0 when the node did not say.
	MemoryUsed int64
	MemoryMax  int64
	// Replication is the node's replication state (INFO replication); nil
	// when the node did not say (unreachable, or an engine without INFO).
	Replication *NodeReplication
}

// NodeReplication is a node's replication state. A master lists its
// replicas; a replica names its master and the state of its link.
type NodeReplication struct {
	Offset int64 // the node's replication offset

	// A master's replicas as it sees them.
	ConnectedReplicas int
	Replicas          []ReplicaHealth

	// A replica's link to its master.
	Master         string        // host:port
	LinkStatus     string        // "up" or "down"
	LastIO         time.Duration // since the last interaction with the master; -1 when unknown
	LinkDownFor    time.Duration // how long the link has been down; 0 while up
	SyncInProgress bool
	// LagBytes is how far the replica is behind its master in replication
	// offset (bytes of the replication stream), -1 when its master is not
	// one of the nodes the client knows.
	LagBytes int64
}

// ReplicaHealth is one replica as its master reports it.
type ReplicaHealth struct {
	Addr     string
	State    string        // "online", "wait_bgsave", "send_bulk"...
	Offset   int64         // the offset it acknowledged
	Lag      time.Duration // since its last acknowledgement (whole seconds)
	LagBytes int64         // the master's offset minus Offset
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
	addNodeInfo(h.Nodes, c.db.NodeInfos(ctx, 2*time.Second))
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

// addNodeInfo fills the nodes' memory and replication from their INFO.
func addNodeInfo(nodes []NodeHealth, infos []rdb.NodeInfo) {
	byAddr := map[string]rdb.NodeInfo{}
	for _, ni := range infos {
		if ni.Err == nil {
			byAddr[ni.Addr] = ni
		}
	}
	for i := range nodes {
		ni, ok := byAddr[nodes[i].Addr]
		if !ok {
			continue
		}
		r := ni.Replication
		nodes[i].MemoryUsed, nodes[i].MemoryMax = ni.UsedMemory, ni.MaxMemory
		nr := &NodeReplication{Offset: r.Offset, ConnectedReplicas: r.ConnectedReplicas, Master: r.MasterAddr,
			LinkStatus: r.MasterLinkStatus, LinkDownFor: time.Duration(r.MasterLinkDownSince) * time.Second,
			SyncInProgress: r.SyncInProgress, LagBytes: -1}
		if r.Role == "slave" {
			nr.LastIO = -1
			if r.MasterLastIOSeconds >= 0 {
				nr.LastIO = time.Duration(r.MasterLastIOSeconds) * time.Second
			}
			if m, ok := byAddr[r.MasterAddr]; ok {
				nr.LagBytes = max(0, m.Replication.Offset-r.Offset)
			}
		} else {
			nr.LagBytes = 0
		}
		for _, l := range r.Replicas {
			nr.Replicas = append(nr.Replicas, ReplicaHealth{Addr: l.Addr, State: l.State, Offset: l.Offset,
				Lag: time.Duration(l.LagSeconds) * time.Second, LagBytes: max(0, r.Offset-l.Offset)})
		}
		nodes[i].Replication = nr
	}
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

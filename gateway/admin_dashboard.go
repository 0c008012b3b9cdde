package gateway

import (
	"net/http"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway/dashboard"
)

// dashboardUI serves the web dashboard (package dashboard). The page and its
// assets are public: they hold no data, and every API call the page makes
// carries the key the user typed.
var dashboardUI = dashboard.Handler()

// serveDashboard answers a request no API route matched when its path is the
// dashboard's ("/", "/ui", "/ui/..."); it reports whether it did.
func (g *Gateway) serveDashboard(w http.ResponseWriter, r *http.Request) bool {
	if !dashboard.Serves(r.URL.Path) {
		return false
	}
	dashboardUI.ServeHTTP(w, r)
	return true
}

// HealthJSON is the answer of GET /v1/health: the Redis deployment as the
// gateway's client sees it (herald.Health in snake_case).
type HealthJSON struct {
	Cluster           bool                   `json:"cluster"`
	Nodes             []NodeHealthJSON       `json:"nodes"`
	FailingPartitions []FailingPartitionJSON `json:"failing_partitions"`
	DegradedPublishes int64                  `json:"degraded_publishes"`
}

// NodeHealthJSON is one Redis node: role, ping latency, memory and
// replication (absent when the node did not answer INFO).
type NodeHealthJSON struct {
	Addr        string               `json:"addr"`
	Role        string               `json:"role"`
	Latency     float64              `json:"latency_seconds"`
	LatencyMS   float64              `json:"latency_ms"` // the same round trip in milliseconds
	Error       string               `json:"error,omitempty"`
	MemoryUsed  int64                `json:"memory_used_bytes"`
	MemoryMax   int64                `json:"memory_max_bytes"`
	Replication *NodeReplicationJSON `json:"replication,omitempty"`
}

// NodeReplicationJSON is a node's replication state: a master's replicas,
// or a replica's link to its master.
type NodeReplicationJSON struct {
	Offset            int64         `json:"offset"`
	ConnectedReplicas int           `json:"connected_replicas"`
	Replicas          []ReplicaJSON `json:"replicas,omitempty"`
	Master            string        `json:"master,omitempty"`
	LinkStatus        string        `json:"master_link_status,omitempty"`
	LastIO            *float64      `json:"master_last_io_seconds,omitempty"`
	LinkDownFor       float64       `json:"master_link_down_seconds,omitempty"`
	SyncInProgress    bool          `json:"sync_in_progress,omitempty"`
	LagBytes          int64         `json:"lag_bytes"`
}

// ReplicaJSON is one replica as its master reports it.
type ReplicaJSON struct {
	Addr       string  `json:"addr"`
	State      string  `json:"state"`
	Offset     int64   `json:"offset"`
	LagSeconds float64 `json:"lag_seconds"`
	LagBytes   int64   `json:"lag_bytes"`
}

// FailingPartitionJSON is a partition whose last append failed.
type FailingPartitionJSON struct {
	Topic     string    `json:"topic"`
	Partition int       `json:"partition"`
	Since     time.Time `json:"since"`
}

func healthJSON(h herald.Health) HealthJSON {
	out := HealthJSON{Cluster: h.Cluster, Nodes: make([]NodeHealthJSON, len(h.Nodes)),
		FailingPartitions: make([]FailingPartitionJSON, len(h.FailingPartitions)), DegradedPublishes: h.DegradedPublishes}
	for i, n := range h.Nodes {
		nj := NodeHealthJSON{Addr: n.Addr, Role: n.Role, Latency: n.Latency.Seconds(), LatencyMS: float64(n.Latency.Microseconds()) / 1000, Error: n.Err, MemoryUsed: n.MemoryUsed, MemoryMax: n.MemoryMax}
		if r := n.Replication; r != nil {
			rj := &NodeReplicationJSON{Offset: r.Offset, ConnectedReplicas: r.ConnectedReplicas, Master: r.Master, LinkStatus: r.LinkStatus,
				LinkDownFor: r.LinkDownFor.Seconds(), SyncInProgress: r.SyncInProgress, LagBytes: r.LagBytes}
			if r.Master != "" && r.LastIO >= 0 {
				s := r.LastIO.Seconds()
				rj.LastIO = &s
			}
			for _, l := range r.Replicas {
				rj.Replicas = append(rj.Replicas, ReplicaJSON{Addr: l.Addr, State: l.State, Offset: l.Offset, LagSeconds: l.Lag.Seconds(), LagBytes: l.LagBytes})
			}
			nj.Replication = rj
		}
		out.Nodes[i] = nj
	}
	for i, p := range h.FailingPartitions {
		out.FailingPartitions[i] = FailingPartitionJSON{Topic: p.Topic, Partition: p.Partition, Since: p.Since}
	}
	return out
}

package herald_test

import (
	"context"
	"testing"
	"time"
)

// TestHealthNodeMemoryAndReplication: Health reports each node's memory
// and replication state (a standalone server is a master without replicas).
func TestHealthNodeMemoryAndReplication(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := newClient(t).Health(ctx)
	if err != nil || len(h.Nodes) != 1 {
		t.Fatalf("Health = %+v, %v", h, err)
	}
	n := h.Nodes[0]
	if n.Role != "master" || n.Err != "" || n.MemoryUsed <= 0 || n.MemoryMax < 0 {
		t.Fatalf("node %+v", n)
	}
	if r := n.Replication; r == nil || r.ConnectedReplicas != 0 || len(r.Replicas) != 0 || r.Master != "" || r.LagBytes != 0 {
		t.Fatalf("replication %+v", n.Replication)
	}
}

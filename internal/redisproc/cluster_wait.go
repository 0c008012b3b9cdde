package redisproc

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/heraldbus/herald/internal/rdb"
)

// WaitHealthy waits until every node answers, reports cluster_state:ok,
// sees every other node without failure flags, every replica's link to its
// master is up, and every node's CLUSTER SLOTS (what cluster clients read)
// lists every replica.
func (c *Cluster) WaitHealthy(ctx context.Context) error { return c.waitHealthy(ctx, false) }

// waitHealthy with roles also requires every node to see Masters masters
// holding slots and Masters*Replicas replicas (right after creation).
func (c *Cluster) waitHealthy(ctx context.Context, roles bool) error {
	nodes := c.snapshot()
	err := poll(ctx, "a healthy cluster", func() (bool, string) {
		for _, nd := range nodes {
			ci, err := Command(nd.Addr(), cmdTimeout, "CLUSTER", "INFO")
			if err != nil {
				return false, fmt.Sprintf("node %d: %v", nd.Port, err)
			}
			if st := rdb.ParseInfo(ci)["cluster_state"]; st != "ok" {
				return false, fmt.Sprintf("node %d: cluster_state:%s", nd.Port, st)
			}
			view, err := nodeView(nd.Addr())
			if err != nil {
				return false, fmt.Sprintf("node %d: %v", nd.Port, err)
			}
			if len(view) != len(nodes) {
				return false, fmt.Sprintf("node %d knows %d of %d nodes", nd.Port, len(view), len(nodes))
			}
			masters, replicas := 0, 0
			var me rdb.TopologyNode
			for _, v := range view {
				for _, f := range []string{"fail", "fail?", "handshake", "noaddr"} {
					if v.HasFlag(f) {
						return false, fmt.Sprintf("node %d sees %s as %s", nd.Port, v.Addr, f)
					}
				}
				if v.Master && len(v.Slots) > 0 {
					masters++
				}
				if !v.Master && v.MasterID != "" {
					replicas++
				}
				if v.Myself {
					me = v
				}
			}
			others := map[string]bool{}
			for _, v := range view {
				if !v.Myself {
					others[v.ID] = true
				}
			}
			if miss := linksMissing(nd.Addr(), others); miss != "" {
				return false, fmt.Sprintf("node %d: %s", nd.Port, miss)
			}
			if roles && (masters != c.Masters || replicas != c.Masters*c.Replicas) {
				return false, fmt.Sprintf("node %d sees %d masters and %d replicas", nd.Port, masters, replicas)
			}
			if !me.Master {
				info, err := Command(nd.Addr(), cmdTimeout, "INFO", "replication")
				if err != nil {
					return false, fmt.Sprintf("node %d: %v", nd.Port, err)
				}
				if st := rdb.ParseInfo(info)["master_link_status"]; st != "up" {
					return false, fmt.Sprintf("replica %d: master_link_status:%s", nd.Port, st)
				}
			}
		}
		return true, ""
	})
	if err != nil {
		return err
	}
	return c.announceReplicas(ctx)
}

// WaitNode waits until the node on port reports cluster_state:ok, when it
// is a replica master_link_status:up, every other running node sees it
// healthy in the same role (after Restart: the others clear its fail flag
// and learn whether it came back as a replica), and every running node's
// CLUSTER SLOTS lists every healthy replica.
func (c *Cluster) WaitNode(ctx context.Context, port int) error {
	nd, err := c.Node(port)
	if err != nil {
		return err
	}
	err = poll(ctx, fmt.Sprintf("node %d to rejoin", port), func() (bool, string) {
		ci, err := Command(nd.Addr(), cmdTimeout, "CLUSTER", "INFO")
		if err != nil {
			return false, err.Error()
		}
		if st := rdb.ParseInfo(ci)["cluster_state"]; st != "ok" {
			return false, "cluster_state:" + st
		}
		view, err := nodeView(nd.Addr())
		if err != nil {
			return false, err.Error()
		}
		var me rdb.TopologyNode
		for _, v := range view {
			if v.Myself {
				me = v
			}
		}
		if !me.Master {
			info, err := Command(nd.Addr(), cmdTimeout, "INFO", "replication")
			if err != nil {
				return false, err.Error()
			}
			if st := rdb.ParseInfo(info)["master_link_status"]; st != "up" {
				return false, "master_link_status:" + st
			}
		}
		others := map[string]bool{}
		for _, other := range c.snapshot() {
			if other.Port != port && ProcessMatches(other.Pid, other.Port) {
				others[other.ID] = true
			}
		}
		if miss := linksMissing(nd.Addr(), others); miss != "" {
			return false, miss
		}
		for _, other := range c.snapshot() {
			if other.Port == port || !ProcessMatches(other.Pid, other.Port) {
				continue
			}
			ov, err := nodeView(other.Addr())
			if err != nil {
				continue // not answering: it learns later
			}
			for _, v := range ov {
				if v.ID != me.ID {
					continue
				}
				if v.Failed() || v.HasFlag("handshake") {
					return false, fmt.Sprintf("node %d still sees it as %s", other.Port, strings.Join(v.Flags, ","))
				}
				if v.Master != me.Master {
					return false, fmt.Sprintf("node %d has not yet learned its role", other.Port)
				}
			}
		}
		return true, ""
	})
	if err != nil {
		return err
	}
	return c.announceReplicas(ctx)
}

// slotsReplicas returns the ids of the replicas that CLUSTER SLOTS on addr
// lists: what cluster clients (rueidis, go-redis) learn the topology from.
func slotsReplicas(addr string) (map[string]bool, error) {
	v, err := query(addr, cmdTimeout, "CLUSTER", "SLOTS")
	if err != nil {
		return nil, err
	}
	ranges, err := rdb.ParseClusterSlots(v)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, r := range ranges {
		for _, id := range r.ReplicaIDs {
			ids[id] = true
		}
	}
	return ids, nil
}

// linksMissing says which cluster bus link addr lacks: a node sends over
// its own outgoing link to each other node, and one without it cannot
// reach that node (a replica without its link to its master refuses CLUSTER
// FAILOVER; a failover election without links gets no votes). Links are
// dropped and re-made for a moment after a MEET between known nodes. It is
// "" when addr has a link to every node in ids; also on Redis before 7.0,
// which has no CLUSTER LINKS.
func linksMissing(addr string, ids map[string]bool) string {
	v, err := query(addr, cmdTimeout, "CLUSTER", "LINKS")
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "unknown") {
			return ""
		}
		return err.Error()
	}
	links, _ := v.([]any)
	have := map[string]bool{}
	for _, l := range links {
		// RESP3 gives each link as a map, RESP2 as a flat key/value array.
		m, ok := l.(map[string]any)
		if !ok {
			m = map[string]any{}
			f, _ := l.([]any)
			for i := 0; i+1 < len(f); i += 2 {
				if k, ok := f[i].(string); ok {
					m[k] = f[i+1]
				}
			}
		}
		dir, _ := m["direction"].(string)
		node, _ := m["node"].(string)
		have[dir+" "+node] = true
	}
	for id := range ids {
		if !have["to "+id] {
			return fmt.Sprintf("no link to %.8s", id)
		}
	}
	return ""
}

// announceReplicas waits until every node's CLUSTER SLOTS lists every
// healthy replica and every node has its bus links to every other. Redis
// leaves out a replica whose replication offset is 0, as it is after a full
// sync until the master's first write, or its replication ping every
// repl-ping-replica-period (10 s): on an idle cluster, clients would see no
// replica for about 10 s. So when one is missing, every master gets a write
// (SET and DEL of a probe key in its slots: no data is left), and the
// replicas' pings carry the new offsets within about a second.
func (c *Cluster) announceReplicas(ctx context.Context) error {
	view, err := c.Topology()
	if err != nil {
		return err
	}
	want := map[string]string{} // replica id -> addr
	for _, v := range view {
		if !v.Master && v.MasterID != "" && !v.Failed() {
			want[v.ID] = v.Addr
		}
	}
	running := func() []ClusterNode {
		var out []ClusterNode
		for _, nd := range c.snapshot() {
			if ProcessMatches(nd.Pid, nd.Port) {
				out = append(out, nd)
			}
		}
		return out
	}
	complete := func() (bool, string) {
		nodes := running()
		for _, nd := range nodes {
			others := map[string]bool{}
			for _, o := range nodes {
				if o.ID != nd.ID {
					others[o.ID] = true
				}
			}
			if miss := linksMissing(nd.Addr(), others); miss != "" {
				return false, fmt.Sprintf("node %d: %s", nd.Port, miss)
			}
			ids, err := slotsReplicas(nd.Addr())
			if err != nil {
				return false, fmt.Sprintf("node %d: CLUSTER SLOTS: %v", nd.Port, err)
			}
			for id, addr := range want {
				if !ids[id] {
					return false, fmt.Sprintf("CLUSTER SLOTS of node %d does not list replica %s yet", nd.Port, addr)
				}
			}
		}
		return true, ""
	}
	if ok, _ := complete(); ok || len(want) == 0 {
		return nil
	}
	for _, v := range view {
		if !v.Master || len(v.Slots) == 0 || v.Failed() {
			continue
		}
		key := probeKey(v.Slots[0])
		if _, err := Command(v.Addr, cmdTimeout, "SET", key, "1"); err != nil {
			return fmt.Errorf("redisproc: write a probe key on master %s: %w", v.Addr, err)
		}
		if _, err := Command(v.Addr, cmdTimeout, "DEL", key); err != nil {
			return fmt.Errorf("redisproc: delete the probe key on master %s: %w", v.Addr, err)
		}
	}
	err = poll(ctx, "the replicas to receive the probe write", func() (bool, string) {
		for _, addr := range want {
			info, err := Command(addr, cmdTimeout, "INFO", "replication")
			if err != nil {
				continue // down: it cannot be listed anyway
			}
			if off := rdb.ParseInfo(info)["slave_repl_offset"]; off == "" || off == "0" {
				return false, fmt.Sprintf("replica %s: slave_repl_offset:%s", addr, off)
			}
		}
		return true, ""
	})
	if err != nil {
		return err
	}
	return poll(ctx, "every node's CLUSTER SLOTS to list every replica", complete)
}

// probeKey returns a key that hashes into r.
func probeKey(r rdb.SlotRange) string {
	for i := 0; ; i++ {
		k := "herald:cluster:probe:{" + strconv.Itoa(i) + "}"
		if s := rdb.KeySlot(k); s >= r.Start && s <= r.End {
			return k
		}
	}
}

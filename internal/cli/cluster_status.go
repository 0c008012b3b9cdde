package cli

// The model of `herald cluster status`: computed here from the survey
// (rdb.ClusterView), printed by printNodes in cluster.go.

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
)

// nodeRow is one node in `herald cluster up/status` output (docs/cli.md).
type nodeRow struct {
	Addr       string `json:"addr"`
	Port       int    `json:"port"`
	ID         string `json:"id"`
	Role       string `json:"role"`             // master or replica
	Master     string `json:"master,omitempty"` // a replica's master (host:port)
	Slots      string `json:"slots"`            // "0-5460", "-" for none
	SlotCount  int    `json:"slot_count"`
	Health     string `json:"health"`          // ok, pfail, fail, unreachable, down (not running)
	Link       string `json:"link,omitempty"`  // a replica's master_link_status (up/down)
	ReplOffset int64  `json:"repl_offset"`     // the node's replication offset
	LagBytes   *int64 `json:"lag_bytes"`       // a replica's offset behind its master (null: unknown or master)
	Pid        int    `json:"pid,omitempty"`   // when started by herald cluster up
	Error      string `json:"error,omitempty"` // why the node could not be asked
	first      int    // first slot, for ordering
	masterID   string // for ordering
}

// clusterStatus is the JSON of `herald cluster status` (docs/cli.md).
type clusterStatus struct {
	State         string    `json:"state"`   // cluster_state of the reachable nodes: ok, or fail if any says fail
	Masters       int       `json:"masters"` // masters serving slots
	Replicas      int       `json:"replicas"`
	SlotsAssigned int       `json:"slots_assigned"`
	Nodes         []nodeRow `json:"nodes"`
}

// clusterStatusOf reads a cluster's topology and every node's health
// through url; state, when known, adds pids and marks nodes whose process
// is not running.
func clusterStatusOf(ctx context.Context, url string, state *redisproc.Cluster) (clusterStatus, error) {
	var st clusterStatus
	db, err := openDB(ctx, url)
	if err != nil {
		return st, err
	}
	defer db.Close()
	if !db.IsCluster() {
		return st, usage("Redis at %s is not a cluster (cluster_enabled:0); 'herald cluster status' needs cluster nodes, 'herald doctor' checks a standalone server", url)
	}
	view := rdb.ViewOf(db.Survey(ctx))
	if view.Nodes == nil {
		return st, fmt.Errorf("no node of the cluster at %s answered CLUSTER NODES; start its nodes (herald cluster up --dir DIR) or check --redis", url)
	}
	// Nodes the client does not route to (a master without slots, a failed
	// replica) are asked over connections of their own.
	for _, r := range db.SurveyAddrs(ctx, view.Unasked()) {
		view.Add(r)
	}
	return statusOfView(view, state), nil
}

// statusOfView computes the status model from a survey's view; state,
// when known, adds pids and marks nodes whose process is not running.
func statusOfView(view rdb.ClusterView, state *redisproc.Cluster) clusterStatus {
	st := clusterStatus{State: view.State, SlotsAssigned: view.SlotsAssigned}
	byAddr := view.Reports
	addrOf := view.AddrOfID()
	for _, v := range view.Nodes {
		row := nodeRow{Addr: v.Addr, ID: v.ID, Role: "replica", Master: addrOf[v.MasterID], Slots: rdb.FormatSlots(v.Slots),
			SlotCount: v.SlotCount(), Health: "ok", first: rdb.ClusterSlots, masterID: v.MasterID}
		if _, p, err := net.SplitHostPort(v.Addr); err == nil {
			row.Port, _ = strconv.Atoi(p)
		}
		if v.Master {
			row.Role, row.masterID = "master", v.ID
			if len(v.Slots) > 0 { // a failed master whose slots moved serves nothing
				st.Masters++
			}
		} else {
			st.Replicas++
		}
		if len(v.Slots) > 0 {
			row.first = v.Slots[0].Start
		}
		r, ok := byAddr[v.Addr]
		switch {
		case v.HasFlag("fail"):
			row.Health = "fail"
		case v.HasFlag("fail?"):
			row.Health = "pfail"
		case !ok:
			row.Health, row.Error = "unreachable", "no address"
		case r.Err != nil:
			row.Health, row.Error = "unreachable", r.Err.Error()
		}
		if ok && r.Err == nil {
			if v.Master {
				row.ReplOffset, _ = strconv.ParseInt(r.Info["master_repl_offset"], 10, 64)
			} else {
				row.Link = r.Info["master_link_status"]
				row.ReplOffset, _ = strconv.ParseInt(r.Info["slave_repl_offset"], 10, 64)
			}
		}
		if !v.Master {
			row.LagBytes = replicaLag(byAddr[addrOf[v.MasterID]], r, v.Addr)
		}
		if state != nil {
			if nd, err := state.Node(row.Port); err == nil && strings.HasPrefix(v.Addr, "127.0.0.1:") {
				row.Pid = nd.Pid
				if !state.Running(nd) {
					row.Health, row.Pid = "down", 0
				}
			}
		}
		st.Nodes = append(st.Nodes, row)
	}
	sortRows(st.Nodes)
	return st
}

// replicaLag is how many bytes of its master's replication stream the
// replica at addr has not processed: the master's master_repl_offset minus
// the replica's own slave_repl_offset (both asked at the same moment), or,
// when the replica does not answer, minus the offset it last acknowledged
// ("slave0:ip=127.0.0.1,port=7004,state=online,offset=123,lag=0" in the
// master's INFO replication; acknowledgements come every second).
func replicaLag(master, replica rdb.NodeReport, addr string) *int64 {
	if master.Err != nil || master.Info == nil {
		return nil
	}
	mo, err := strconv.ParseInt(master.Info["master_repl_offset"], 10, 64)
	if err != nil {
		return nil
	}
	if replica.Err == nil && replica.Info != nil {
		if ro, err := strconv.ParseInt(replica.Info["slave_repl_offset"], 10, 64); err == nil {
			lag := max(mo-ro, 0)
			return &lag
		}
	}
	host, port, _ := net.SplitHostPort(addr)
	for k, v := range master.Info {
		if !strings.HasPrefix(k, "slave") || !strings.Contains(v, "port=") {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Split(v, ",") {
			if a, b, ok := strings.Cut(kv, "="); ok {
				f[a] = b
			}
		}
		if f["ip"] == host && f["port"] == port {
			off, err := strconv.ParseInt(f["offset"], 10, 64)
			if err != nil {
				return nil
			}
			lag := max(mo-off, 0)
			return &lag
		}
	}
	return nil
}

// sortRows puts masters in slot order, each followed by its replicas.
func sortRows(rows []nodeRow) {
	first := map[string]int{}
	for _, r := range rows {
		if r.Role == "master" {
			first[r.ID] = r.first
		}
	}
	key := func(r nodeRow) (int, int, int) {
		f, ok := first[r.masterID]
		if !ok {
			f = rdb.ClusterSlots + 1 // orphans last
		}
		rank := 1
		if r.Role == "master" {
			rank = 0
		}
		return f, rank, r.Port
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a1, a2, a3 := key(rows[i])
		b1, b2, b3 := key(rows[j])
		if a1 != b1 {
			return a1 < b1
		}
		if a2 != b2 {
			return a2 < b2
		}
		return a3 < b3
	})
}

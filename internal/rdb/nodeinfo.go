package rdb

import (
	"context"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// NodeInfo is what one node says about its memory and replication (INFO
// memory and INFO replication), read for health reports.
type NodeInfo struct {
	Addr        string
	UsedMemory  int64 // used_memory, bytes
	MaxMemory   int64 // maxmemory, bytes; 0 when unlimited
	Replication ReplicationInfo
	Err         error // why the node did not answer; the other fields are then zero
}

// ReplicationInfo is a node's INFO replication section: a master lists its
// connected replicas; a replica names its master and the state of its link.
type ReplicationInfo struct {
	Role   string // "master" or "slave"
	Offset int64  // master_repl_offset (master) or slave_repl_offset (replica)

	// A master's replicas.
	ConnectedReplicas int
	Replicas          []ReplicaLink

	// A replica's master.
	MasterAddr          string // host:port
	MasterLinkStatus    string // "up" or "down"
	MasterLastIOSeconds int64  // seconds since the last interaction with the master; -1 when unknown
	MasterLinkDownSince int64  // seconds the link has been down; 0 while up
	SyncInProgress      bool
}

// ReplicaLink is one replica in a master's INFO replication
// ("slaveN:ip=...,port=...,state=online,offset=...,lag=...").
type ReplicaLink struct {
	Addr       string
	State      string // "online", "wait_bgsave", "send_bulk"...
	Offset     int64  // replication offset the replica acknowledged
	LagSeconds int64  // seconds since its last acknowledgement
}

// NodeInfos sends INFO memory and INFO replication (one round trip) to
// every node the client knows, one after the other, each bounded by
// timeout, and returns the answers sorted by address. A node that does not
// answer (or an engine without INFO sections) has Err set.
func (db *DB) NodeInfos(ctx context.Context, timeout time.Duration) []NodeInfo {
	var out []NodeInfo
	db.eachNode(func(addr string, n rueidis.Client) {
		ni := NodeInfo{Addr: addr}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		rs := n.DoMulti(rctx,
			n.B().Info().Section("memory").Build(),
			n.B().Info().Section("replication").Build())
		cancel()
		mem, err := rs[0].ToString()
		if err == nil {
			var repl string
			if repl, err = rs[1].ToString(); err == nil {
				ni.UsedMemory, ni.MaxMemory, ni.Replication = ParseNodeInfo(mem + "\n" + repl)
			}
		}
		ni.Err = err
		out = append(out, ni)
	})
	return out
}

// ParseNodeInfo reads used_memory, maxmemory and the replication state from
// the text of INFO memory and INFO replication.
func ParseNodeInfo(info string) (used, maxMem int64, r ReplicationInfo) {
	m := ParseInfo(info)
	num := func(k string, def int64) int64 {
		if v, err := strconv.ParseInt(m[k], 10, 64); err == nil {
			return v
		}
		return def
	}
	used, maxMem = num("used_memory", 0), num("maxmemory", 0)
	r.Role = m["role"]
	if r.Role == "slave" {
		r.Offset = num("slave_repl_offset", 0)
		if h := m["master_host"]; h != "" {
			r.MasterAddr = net.JoinHostPort(h, m["master_port"])
		}
		r.MasterLinkStatus = m["master_link_status"]
		r.MasterLastIOSeconds = num("master_last_io_seconds_ago", -1)
		r.MasterLinkDownSince = num("master_link_down_since_seconds", 0)
		r.SyncInProgress = m["master_sync_in_progress"] == "1"
		return used, maxMem, r
	}
	r.Offset = num("master_repl_offset", 0)
	r.ConnectedReplicas = int(num("connected_slaves", 0))
	for i := 0; ; i++ {
		v, ok := m["slave"+strconv.Itoa(i)]
		if !ok {
			break
		}
		kv := map[string]string{}
		for _, f := range strings.Split(v, ",") {
			if k, x, ok := strings.Cut(f, "="); ok {
				kv[k] = x
			}
		}
		l := ReplicaLink{State: kv["state"]}
		if kv["ip"] != "" {
			l.Addr = net.JoinHostPort(kv["ip"], kv["port"])
		}
		l.Offset, _ = strconv.ParseInt(kv["offset"], 10, 64)
		l.LagSeconds, _ = strconv.ParseInt(kv["lag"], 10, 64)
		r.Replicas = append(r.Replicas, l)
	}
	return used, maxMem, r
}

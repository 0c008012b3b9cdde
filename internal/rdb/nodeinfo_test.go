package rdb_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestParseNodeInfo: memory and both sides of replication are read from
// INFO text as Redis 7 writes it.
func TestParseNodeInfo(t *testing.T) {
	master := "# Memory\r\nused_memory:1048576\r\nmaxmemory:0\r\n# Replication\r\nrole:master\r\nconnected_slaves:2\r\n" +
		"slave0:ip=127.0.0.1,port=7001,state=online,offset=9000,lag=1\r\nslave1:ip=::1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n" +
		"master_repl_offset:9042\r\n"
	used, maxMem, r := rdb.ParseNodeInfo(master)
	if used != 1048576 || maxMem != 0 || r.Role != "master" || r.Offset != 9042 || r.ConnectedReplicas != 2 || len(r.Replicas) != 2 {
		t.Fatalf("master: used %d max %d %+v", used, maxMem, r)
	}
	if l := r.Replicas[0]; l.Addr != "127.0.0.1:7001" || l.State != "online" || l.Offset != 9000 || l.LagSeconds != 1 {
		t.Errorf("replica 0: %+v", l)
	}
	if l := r.Replicas[1]; l.Addr != "[::1]:7002" || l.State != "wait_bgsave" {
		t.Errorf("replica 1: %+v", l)
	}
	replica := "used_memory:2048\nmaxmemory:1073741824\nrole:slave\nmaster_host:127.0.0.1\nmaster_port:7000\n" +
		"master_link_status:down\nmaster_last_io_seconds_ago:-1\nmaster_sync_in_progress:1\nslave_repl_offset:77\nmaster_link_down_since_seconds:12\n"
	used, maxMem, r = rdb.ParseNodeInfo(replica)
	if used != 2048 || maxMem != 1<<30 || r.Role != "slave" || r.MasterAddr != "127.0.0.1:7000" || r.MasterLinkStatus != "down" ||
		r.MasterLastIOSeconds != -1 || !r.SyncInProgress || r.Offset != 77 || r.MasterLinkDownSince != 12 {
		t.Fatalf("replica: used %d max %d %+v", used, maxMem, r)
	}
	if used, _, r := rdb.ParseNodeInfo(""); used != 0 || r.Role != "" || r.Replicas != nil {
		t.Errorf("empty INFO: %d %+v", used, r)
	}
}

// TestNodeInfosReplication: against a real master and its replica, the
// master reports its online replica and the replica an up link, and both
// report the memory they use.
func TestNodeInfosReplication(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := redistest.Own(t, redisproc.Options{Args: []string{"--repl-diskless-sync-delay", "0"}})
	r := redistest.Own(t, redisproc.Options{})
	if _, err := rdb.Command(ctx, r.Addr(), "REPLICAOF", "127.0.0.1", strconv.Itoa(m.Port)); err != nil {
		t.Fatal(err)
	}
	open := func(s *redisproc.Server) *rdb.DB {
		db, err := rdb.Open(ctx, rdb.Options{URL: s.URL(), Namespace: redistest.Namespace(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	mdb, rdbc := open(m), open(r)
	var mi, ri rdb.NodeInfo
	deadline := time.Now().Add(15 * time.Second)
	for {
		mi, ri = mdb.NodeInfos(ctx, 2*time.Second)[0], rdbc.NodeInfos(ctx, 2*time.Second)[0]
		if ri.Replication.MasterLinkStatus == "up" && len(mi.Replication.Replicas) == 1 && mi.Replication.Replicas[0].State == "online" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replication not up within 15 s: master %+v, replica %+v", mi, ri)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if mi.Err != nil || mi.Addr != m.Addr() || mi.UsedMemory <= 0 || mi.Replication.Role != "master" || mi.Replication.ConnectedReplicas != 1 {
		t.Errorf("master: %+v", mi)
	}
	if ri.Err != nil || ri.UsedMemory <= 0 || ri.Replication.Role != "slave" || ri.Replication.MasterAddr != m.Addr() || ri.Replication.MasterLastIOSeconds < 0 {
		t.Errorf("replica: %+v", ri)
	}
}

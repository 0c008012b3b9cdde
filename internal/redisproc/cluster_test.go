package redisproc

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

// needRedis skips without redis-server, or fails with HERALD_REQUIRE_REDIS=1.
// (redistest imports this package, so its Skip cannot be used here.)
func needRedis(t *testing.T) {
	t.Helper()
	if Installed() {
		return
	}
	if os.Getenv("HERALD_REQUIRE_REDIS") == "1" {
		t.Fatal("redis-server is not installed and HERALD_REQUIRE_REDIS=1")
	}
	t.Skip("redis-server is not installed")
}

func TestProbeKeyHashesIntoItsRange(t *testing.T) {
	for _, r := range rdb.EvenSlotRanges(3) {
		if s := rdb.KeySlot(probeKey(r)); s < r.Start || s > r.End {
			t.Errorf("probe key for %v hashes to %d", r, s)
		}
	}
}

func TestStartClusterRejectsBadOptions(t *testing.T) {
	needRedis(t)
	dir := t.TempDir()
	cases := []struct {
		opts ClusterOptions
		want string
	}{
		{ClusterOptions{Dir: dir, Masters: -1}, "masters out of range"},
		{ClusterOptions{Dir: dir, Masters: MaxClusterMasters + 1}, "masters out of range"},
		{ClusterOptions{Dir: dir, Replicas: -1}, "replicas per master out of range"},
		{ClusterOptions{Dir: dir, Port: 60000}, "out of range"},
		{ClusterOptions{}, "needs a directory"},
		{ClusterOptions{Dir: dir, NodeTimeout: time.Millisecond}, "too short"},
	}
	for _, tc := range cases {
		if _, err := StartCluster(context.Background(), tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.opts, err, tc.want)
		}
	}
	// A first port in use is named, and nothing is started.
	ps, err := pickPorts(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ps[0]+2)))
	if err != nil {
		t.Skip("port taken meanwhile")
	}
	defer l.Close()
	_, err = StartCluster(context.Background(), ClusterOptions{Dir: dir, Port: ps[0]})
	if err == nil || !strings.Contains(err.Error(), "port "+strconv.Itoa(ps[0]+2)+" is in use") {
		t.Fatalf("busy port: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("refused start left %d entries in %s", len(entries), dir)
	}
}

// A 3x1 cluster: roles and slots read back, state file round trip, a
// replica killed and restarted, a foreign pid never signalled, then a
// clean stop that leaves no process and a purge that leaves no data.
func TestClusterLifecycle(t *testing.T) {
	needRedis(t)
	dir := filepath.Join(t.TempDir(), "cl")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	c, err := StartCluster(ctx, ClusterOptions{Masters: 3, Replicas: 1, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a failed test must not leave processes behind
		for _, nd := range c.snapshot() {
			c.killPid(nd.Pid, nd.Port)
		}
	})
	t.Logf("cluster up in %v: %s", time.Since(start), c.URL())

	view, err := c.Topology()
	if err != nil {
		t.Fatal(err)
	}
	masters, replicas, slots := map[string]rdb.TopologyNode{}, 0, 0
	for _, v := range view {
		if v.Master {
			masters[v.ID] = v
			slots += v.SlotCount()
		}
	}
	for _, v := range view {
		if !v.Master {
			if _, ok := masters[v.MasterID]; !ok {
				t.Fatalf("replica %s follows unknown master %s", v.Addr, v.MasterID)
			}
			replicas++
		}
	}
	if len(view) != 6 || len(masters) != 3 || replicas != 3 || slots != ClusterSlots {
		t.Fatalf("topology: %d nodes, %d masters, %d replicas, %d slots: %+v", len(view), len(masters), replicas, slots, view)
	}

	// What cluster clients read: every node's CLUSTER SLOTS lists every
	// replica (Redis hides replicas whose offset is still 0).
	for _, nd := range c.Nodes {
		ids, err := slotsReplicas(nd.Addr())
		if err != nil || len(ids) != 3 {
			t.Fatalf("CLUSTER SLOTS of %d lists replicas %v (%v)", nd.Port, ids, err)
		}
	}
	for _, key := range []string{"foo{}{bar}", "{a}b", "herald:{orders/0}:s", "x"} {
		got, err := query(c.Nodes[0].Addr(), time.Second, "CLUSTER", "KEYSLOT", key)
		if err != nil || got != int64(rdb.KeySlot(key)) {
			t.Errorf("CLUSTER KEYSLOT %q = %v (%v), rdb.KeySlot %d", key, got, err, rdb.KeySlot(key))
		}
	}

	loaded, err := LoadCluster(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.URL() != c.URL() || len(loaded.Nodes) != 6 {
		t.Fatalf("state file: %s, %d nodes; want %s", loaded.URL(), len(loaded.Nodes), c.URL())
	}
	var replica *ClusterNode
	for i, nd := range loaded.Nodes {
		if nd.Pid != c.Nodes[i].Pid || nd.ID != c.Nodes[i].ID || nd.ID == "" || !loaded.Running(nd) {
			t.Fatalf("state node %+v vs started %+v", nd, c.Nodes[i])
		}
		for _, v := range view {
			if v.ID == nd.ID && !v.Master {
				replica = nd
			}
		}
	}

	// A pid that is not a redis-server of that port is never signalled.
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	foreign, _ := LoadCluster(dir)
	foreign.Nodes[0].Pid = sleeper.Process.Pid
	if _, err := foreign.Kill(foreign.Nodes[0].Port); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("Kill of a foreign pid: %v", err)
	}
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the foreign process was signalled: %v", err)
	}

	// Crash a replica (from the loaded state, as another process would) and restart it.
	oldPid := replica.Pid
	if _, err := loaded.Kill(replica.Port); err != nil {
		t.Fatal(err)
	}
	if ProcessMatches(oldPid, replica.Port) {
		t.Fatal("killed replica still runs")
	}
	if err := Ping(replica.Addr(), 200*time.Millisecond); err == nil {
		t.Fatal("killed replica still answers")
	}
	rs := time.Now()
	if err := c.Restart(ctx, replica.Port); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNode(ctx, replica.Port); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	nd, _ := c.Node(replica.Port)
	if nd.Pid == oldPid || !c.Running(nd) {
		t.Fatalf("restarted node pid %d (old %d)", nd.Pid, oldPid)
	}
	if again, _ := LoadCluster(dir); again.Nodes[0].Pid == 0 {
		t.Fatal("state file lost pids")
	} else if n, _ := again.Node(replica.Port); n.Pid != nd.Pid {
		t.Fatalf("state file pid %d, want the restarted %d", n.Pid, nd.Pid)
	}
	t.Logf("replica restarted and linked in %v", time.Since(rs))

	ss := time.Now()
	stopped, err := c.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %v", time.Since(ss))
	for _, s := range stopped {
		if s.Note != "stopped" || ProcessMatches(s.Pid, s.Port) {
			t.Fatalf("after Stop: %+v", s)
		}
	}
	if again, err := LoadCluster(dir); err != nil || again.Nodes[0].Pid != 0 {
		t.Fatalf("state after stop: %v", err)
	}
	if err := c.Purge(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("data directory left after Purge: %v", err)
	}
	if _, err := LoadCluster(dir); !errors.Is(err, ErrNoCluster) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadCluster after purge: %v", err)
	}
}

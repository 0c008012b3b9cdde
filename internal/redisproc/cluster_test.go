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

func TestParseClusterNodes(t *testing.T) {
	const reply = `07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383 [16384->-x]
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 slave,fail? 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 5462
`
	nodes, err := ParseClusterNodes(reply)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 5 {
		t.Fatalf("%d nodes", len(nodes))
	}
	me := nodes[0]
	if me.Addr != "127.0.0.1:30001" || !me.Myself || !me.Master || FormatSlots(me.Slots) != "0-5460,5462" || me.SlotCount() != 5462 {
		t.Fatalf("first node = %+v", me)
	}
	if r := nodes[3]; r.Addr != "127.0.0.1:30004" || r.Master || r.MasterID != me.ID || !r.Connected {
		t.Fatalf("replica = %+v", r)
	}
	if f := nodes[4]; !f.Failed() || f.Connected || f.HasFlag("fail") {
		t.Fatalf("failing replica = %+v", f)
	}
	if n := nodes[2]; FormatSlots(n.Slots) != "10923-16383" {
		t.Fatalf("migrating slot not skipped: %+v", n.Slots)
	}
	for _, bad := range []string{"abc 127.0.0.1:1@2 master", "id 127.0.0.1:1@2 master - 0 0 1 connected 16384", "id 127.0.0.1:1@2 master - x 0 1 connected"} {
		if _, err := ParseClusterNodes(bad); err == nil {
			t.Errorf("ParseClusterNodes(%q) accepted", bad)
		}
	}
}

func TestSlotRangesCoverEverySlot(t *testing.T) {
	if got := slotRanges(3); got[0] != (SlotRange{0, 5460}) || got[1] != (SlotRange{5461, 10922}) || got[2] != (SlotRange{10923, 16383}) {
		t.Fatalf("3 masters: %v (redis-cli gives 0-5460, 5461-10922, 10923-16383)", got)
	}
	for m := 1; m <= MaxClusterMasters; m++ {
		next := 0
		for _, r := range slotRanges(m) {
			if r.Start != next || r.End < r.Start {
				t.Fatalf("%d masters: range %v after %d", m, r, next)
			}
			next = r.End + 1
		}
		if next != ClusterSlots {
			t.Fatalf("%d masters cover %d slots", m, next)
		}
	}
}

func TestKeySlot(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	for key, want := range map[string]int{"foo": 12182, "somekey": 11058, "{user1000}.following": KeySlot("user1000")} {
		if got := KeySlot(key); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", key, got, want)
		}
	}
	if KeySlot("{user1000}.following") != KeySlot("{user1000}.followers") {
		t.Error("hash tags ignored")
	}
	for _, r := range slotRanges(3) {
		if s := KeySlot(probeKey(r)); s < r.Start || s > r.End {
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
	masters, replicas, slots := map[string]TopologyNode{}, 0, 0
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
		if err != nil || got != int64(KeySlot(key)) {
			t.Errorf("CLUSTER KEYSLOT %q = %v (%v), KeySlot %d", key, got, err, KeySlot(key))
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
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
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

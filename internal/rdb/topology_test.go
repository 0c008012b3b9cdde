package rdb

import (
	"reflect"
	"strings"
	"testing"
)

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
	if got := EvenSlotRanges(3); !reflect.DeepEqual(got[0], SlotRange{Start: 0, End: 5460}) || !reflect.DeepEqual(got[1], SlotRange{Start: 5461, End: 10922}) || !reflect.DeepEqual(got[2], SlotRange{Start: 10923, End: 16383}) {
		t.Fatalf("3 masters: %v (redis-cli gives 0-5460, 5461-10922, 10923-16383)", got)
	}
	for m := 1; m <= 64; m++ {
		next := 0
		for _, r := range EvenSlotRanges(m) {
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
}

func TestParseInfo(t *testing.T) {
	m := ParseInfo("# Server\r\nredis_version:7.2.4\r\nrole:master\r\nno colon here\r\n\r\n# Cluster\r\ncluster_enabled:1\r\nx:a:b\r\n")
	if m["redis_version"] != "7.2.4" || m["role"] != "master" || m["cluster_enabled"] != "1" || m["x"] != "a:b" || len(m) != 4 {
		t.Fatalf("ParseInfo = %v", m)
	}
}

func TestParseClusterSlots(t *testing.T) {
	reply := []any{
		[]any{int64(5461), int64(10922), []any{"127.0.0.1", int64(30002), "id2"}, []any{"127.0.0.1", int64(30005), "id5"}},
		[]any{int64(0), int64(5460), []any{"127.0.0.1", int64(30001), "id1"}},
	}
	rs, err := ParseClusterSlots(reply)
	if err != nil {
		t.Fatal(err)
	}
	want := []SlotRange{
		{Start: 0, End: 5460, Master: "127.0.0.1:30001", MasterID: "id1"},
		{Start: 5461, End: 10922, Master: "127.0.0.1:30002", MasterID: "id2", Replicas: []string{"127.0.0.1:30005"}, ReplicaIDs: []string{"id5"}},
	}
	if !reflect.DeepEqual(rs, want) {
		t.Fatalf("ParseClusterSlots = %+v, want %+v", rs, want)
	}
	for _, bad := range []any{"x", []any{[]any{int64(1)}}, []any{[]any{int64(5), int64(1), []any{}}}, []any{[]any{int64(0), int64(16384), []any{}}}} {
		if _, err := ParseClusterSlots(bad); err == nil {
			t.Errorf("ParseClusterSlots(%v) accepted", bad)
		}
	}
}

// FuzzParseClusterNodes: any text either fails with an error or yields
// nodes whose slots lie in 0..16383 with Start <= End, never a panic.
func FuzzParseClusterNodes(f *testing.F) {
	f.Add("e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 5462 [5463->-x]\n")
	f.Add("07c3 127.0.0.1:30004@31004,host4 slave e7d1 0 1426238317239 4 connected\n")
	f.Add("id :0@0 master,noaddr - 0 0 0 disconnected\n")
	f.Add("id [::1]:7000@17000 master - 0 0 0 connected 16383\n")
	f.Fuzz(func(t *testing.T, s string) {
		nodes, err := ParseClusterNodes(s)
		if err != nil {
			return
		}
		for _, n := range nodes {
			for _, r := range n.Slots {
				if r.Start < 0 || r.End < r.Start || r.End >= ClusterSlots {
					t.Fatalf("slot range %v out of bounds from %q", r, s)
				}
			}
			if n.SlotCount() < 0 || n.SlotCount() > ClusterSlots*len(n.Slots) {
				t.Fatalf("slot count %d", n.SlotCount())
			}
		}
	})
}

// FuzzParseInfo: every key parsed is a line's text before its first colon.
func FuzzParseInfo(f *testing.F) {
	f.Add("# Server\r\nredis_version:7.2.4\r\n")
	f.Add("a:b:c\n#x:y\n:empty\n")
	f.Fuzz(func(t *testing.T, s string) {
		for k, v := range ParseInfo(s) {
			if strings.Contains(k, ":") || strings.Contains(k, "\n") || strings.Contains(v, "\n") {
				t.Fatalf("ParseInfo(%q): key %q value %q", s, k, v)
			}
		}
	})
}

// FuzzParseClusterSlots: ranges from any slot numbers are accepted only in bounds.
func FuzzParseClusterSlots(f *testing.F) {
	f.Add(int64(0), int64(5460), "127.0.0.1", int64(7000), "id")
	f.Add(int64(5), int64(1), "", int64(-1), "")
	f.Fuzz(func(t *testing.T, start, end int64, host string, port int64, id string) {
		rs, err := ParseClusterSlots([]any{[]any{start, end, []any{host, port, id}}})
		if err != nil {
			return
		}
		if len(rs) != 1 || rs[0].Start < 0 || rs[0].End < rs[0].Start || rs[0].End >= ClusterSlots || rs[0].MasterID != id {
			t.Fatalf("ParseClusterSlots(%d, %d) = %+v", start, end, rs)
		}
	})
}

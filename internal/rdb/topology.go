package rdb

import (
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
)

// This file is the one home of Redis Cluster topology: hash slots, slot
// ranges, the node model and the parsers of INFO, CLUSTER NODES and
// CLUSTER SLOTS. Cluster bootstrap (redisproc), placement and the CLI's
// `cluster status` and `doctor` all read through it.

// ClusterSlots is the number of hash slots of a Redis Cluster.
const ClusterSlots = 16384

// KeySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the hash
// tag (the part between the first { and the next }, when not empty) or of
// the whole key, modulo 16384.
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % ClusterSlots)
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// SlotRange is a range of hash slots, both ends included. From CLUSTER
// SLOTS it also names the master and replicas serving it; in CLUSTER NODES
// (TopologyNode.Slots) only Start and End are set.
type SlotRange struct {
	Start      int      `json:"start"`
	End        int      `json:"end"`
	Master     string   `json:"master,omitempty"`   // host:port
	Replicas   []string `json:"replicas,omitempty"` // host:port
	MasterID   string   `json:"master_id,omitempty"`
	ReplicaIDs []string `json:"replica_ids,omitempty"`
}

// Count is the number of slots in the range.
func (r SlotRange) Count() int { return r.End - r.Start + 1 }

// FormatSlots writes ranges as "0-5460,5462": "-" when there are none.
func FormatSlots(rs []SlotRange) string {
	if len(rs) == 0 {
		return "-"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r.Start == r.End {
			parts[i] = strconv.Itoa(r.Start)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.Start, r.End)
		}
	}
	return strings.Join(parts, ",")
}

// EvenSlotRanges splits the 16384 slots into n contiguous ranges as
// redis-cli --cluster create does (the first ones one slot larger).
func EvenSlotRanges(n int) []SlotRange {
	if n < 1 {
		return nil
	}
	out := make([]SlotRange, n)
	per := float64(ClusterSlots) / float64(n)
	first, cursor := 0, 0.0
	for i := range out {
		last := int(math.Round(cursor + per - 1))
		if last > ClusterSlots-1 || i == n-1 {
			last = ClusterSlots - 1
		}
		if last < first {
			last = first
		}
		out[i] = SlotRange{Start: first, End: last}
		first, cursor = last+1, cursor+per
	}
	return out
}

// TopologyNode is one line of CLUSTER NODES: one node as another node (or
// itself, Myself) sees it.
type TopologyNode struct {
	ID          string      `json:"id"`
	Addr        string      `json:"addr"` // host:port ("" for a node without address)
	Flags       []string    `json:"flags"`
	Myself      bool        `json:"myself"`
	Master      bool        `json:"master"`
	MasterID    string      `json:"master_id,omitempty"` // a replica's master
	PingSent    int64       `json:"ping_sent"`
	PongRecv    int64       `json:"pong_recv"`
	ConfigEpoch int64       `json:"config_epoch"`
	Connected   bool        `json:"connected"` // the cluster bus link
	Slots       []SlotRange `json:"slots,omitempty"`
}

// HasFlag reports whether the node carries flag (e.g. "fail", "fail?").
func (n TopologyNode) HasFlag(flag string) bool {
	for _, f := range n.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// Failed reports a node flagged fail or fail? (possibly failing).
func (n TopologyNode) Failed() bool { return n.HasFlag("fail") || n.HasFlag("fail?") }

// SlotCount is the number of slots the node serves.
func (n TopologyNode) SlotCount() int {
	total := 0
	for _, r := range n.Slots {
		total += r.Count()
	}
	return total
}

// ParseInfo parses INFO-style "key:value" lines (INFO, CLUSTER INFO),
// skipping "# Section" headers and lines without a colon.
func ParseInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// ParseClusterNodes parses the reply of CLUSTER NODES:
// <id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv>
// <config-epoch> <link-state> <slot> ... Slots being imported or migrated
// ("[...]") are skipped. Nodes come out sorted by address.
func ParseClusterNodes(s string) ([]TopologyNode, error) {
	var out []TopologyNode
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q has %d fields, want at least 8", line, len(f))
		}
		n := TopologyNode{ID: f[0], Flags: strings.Split(f[2], ","), Connected: f[7] == "connected"}
		addr, _, _ := strings.Cut(f[1], "@")
		addr, _, _ = strings.Cut(addr, ",")
		if i := strings.LastIndex(addr, ":"); i > 0 && addr[:i] != "" {
			n.Addr = net.JoinHostPort(strings.Trim(addr[:i], "[]"), addr[i+1:])
		}
		n.Myself = n.HasFlag("myself")
		n.Master = n.HasFlag("master")
		if f[3] != "-" {
			n.MasterID = f[3]
		}
		var err error
		if n.PingSent, err = strconv.ParseInt(f[4], 10, 64); err == nil {
			if n.PongRecv, err = strconv.ParseInt(f[5], 10, 64); err == nil {
				n.ConfigEpoch, err = strconv.ParseInt(f[6], 10, 64)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES line %q: %v", line, err)
		}
		for _, sl := range f[8:] {
			if strings.HasPrefix(sl, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(sl, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || a < 0 || b < a || b >= ClusterSlots {
				return nil, fmt.Errorf("CLUSTER NODES line %q: bad slot %q", line, sl)
			}
			n.Slots = append(n.Slots, SlotRange{Start: a, End: b})
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return AddrLess(out[i].Addr, out[j].Addr) })
	return out, nil
}

// ParseClusterSlots parses the reply of CLUSTER SLOTS as Do or Command
// return it: per range [start, end, master, replica...], each node
// [host, port, id, ...]. Ranges come out sorted by start.
func ParseClusterSlots(v any) ([]SlotRange, error) {
	arr, ok := v.([]any)
	if !ok && v != nil {
		return nil, fmt.Errorf("CLUSTER SLOTS: reply is %T, want an array", v)
	}
	out := make([]SlotRange, 0, len(arr))
	for _, r := range arr {
		f, ok := r.([]any)
		if !ok || len(f) < 3 {
			return nil, fmt.Errorf("CLUSTER SLOTS: unexpected range %v", r)
		}
		start, ok1 := f[0].(int64)
		end, ok2 := f[1].(int64)
		if !ok1 || !ok2 || start < 0 || end < start || end >= ClusterSlots {
			return nil, fmt.Errorf("CLUSTER SLOTS: bad range %v-%v", f[0], f[1])
		}
		sr := SlotRange{Start: int(start), End: int(end)}
		for i, n := range f[2:] {
			nf, ok := n.([]any)
			if !ok || len(nf) < 2 {
				continue
			}
			host, _ := nf[0].(string)
			port, _ := nf[1].(int64)
			id := ""
			if len(nf) > 2 {
				id, _ = nf[2].(string)
			}
			addr := net.JoinHostPort(host, strconv.FormatInt(port, 10))
			if i == 0 {
				sr.Master, sr.MasterID = addr, id
			} else {
				sr.Replicas = append(sr.Replicas, addr)
				sr.ReplicaIDs = append(sr.ReplicaIDs, id)
			}
		}
		out = append(out, sr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, nil
}

// AddrLess orders host:port addresses by host, then numerically by port.
func AddrLess(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if ha != hb {
		return ha < hb
	}
	na, _ := strconv.Atoi(pa)
	nb, _ := strconv.Atoi(pb)
	return na < nb
}

package rdb

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// KeySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the hash
// tag (the part between the first { and the next }, when not empty) or of
// the whole key, modulo 16384.
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % 16384)
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

// SlotRange is a range of slots served by one master.
type SlotRange struct {
	Start, End int
	Master     string   // host:port
	Replicas   []string // host:port
}

// SlotRanges reads the cluster's slot map (CLUSTER SLOTS), sorted by start.
// On a standalone server it returns nil.
func (db *DB) SlotRanges(ctx context.Context) ([]SlotRange, error) {
	if !db.IsCluster() {
		return nil, nil
	}
	arr, err := db.c.Do(ctx, db.c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]SlotRange, 0, len(arr))
	for _, r := range arr {
		f, err := r.ToArray()
		if err != nil || len(f) < 3 {
			return nil, fmt.Errorf("CLUSTER SLOTS: unexpected reply")
		}
		start, _ := f[0].AsInt64()
		end, _ := f[1].AsInt64()
		sr := SlotRange{Start: int(start), End: int(end)}
		for i, n := range f[2:] {
			nf, err := n.ToArray()
			if err != nil || len(nf) < 2 {
				continue
			}
			host, _ := nf[0].ToString()
			port, _ := nf[1].AsInt64()
			addr := host + ":" + strconv.FormatInt(port, 10)
			if i == 0 {
				sr.Master = addr
			} else {
				sr.Replicas = append(sr.Replicas, addr)
			}
		}
		out = append(out, sr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, nil
}

// MasterOf returns the master serving slot in ranges ("" when unknown).
func MasterOf(ranges []SlotRange, slot int) string {
	for _, r := range ranges {
		if slot >= r.Start && slot <= r.End {
			return r.Master
		}
	}
	return ""
}

// BalancedTags chooses one hash tag per partition so that the partitions
// spread evenly over the masters of ranges: partition p goes to master
// p mod M (masters sorted by address). A tag is "<topic>/<p>", or
// "<topic>/<p>~<n>" with the smallest n whose slot is on the wanted master.
// Without ranges (standalone) the plain tags are returned.
func BalancedTags(topic string, partitions int, ranges []SlotRange) []string {
	tags := make([]string, partitions)
	masters := map[string]bool{}
	for _, r := range ranges {
		masters[r.Master] = true
	}
	list := make([]string, 0, len(masters))
	for m := range masters {
		list = append(list, m)
	}
	sort.Strings(list)
	for p := range tags {
		base := topic + "/" + strconv.Itoa(p)
		tags[p] = base
		if len(list) < 2 {
			continue
		}
		want := list[p%len(list)]
		for n := 0; n < 100000; n++ {
			tag := base
			if n > 0 {
				tag = base + "~" + strconv.Itoa(n)
			}
			if MasterOf(ranges, KeySlot("{"+tag+"}")) == want {
				tags[p] = tag
				break
			}
		}
	}
	return tags
}

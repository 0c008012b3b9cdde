package rdb

import (
	"context"
	"sort"
	"strconv"
)

// SlotRanges reads the cluster's slot map (CLUSTER SLOTS), sorted by start.
// On a standalone server it returns nil.
func (db *DB) SlotRanges(ctx context.Context) ([]SlotRange, error) {
	if !db.IsCluster() {
		return nil, nil
	}
	v, err := db.Do(ctx, "CLUSTER", "SLOTS")
	if err != nil {
		return nil, err
	}
	return ParseClusterSlots(v)
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

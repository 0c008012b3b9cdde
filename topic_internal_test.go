package herald

import (
	"testing"

	"github.com/heraldbus/herald/internal/rdb"
)

// A topic created without a partition count gets 1 partition on a
// standalone Redis and 2 per master on a cluster, however the masters'
// slots are split into ranges.
func TestDefaultPartitionsFollowMasters(t *testing.T) {
	if n := defaultPartitions(nil); n != DefaultPartitions {
		t.Fatalf("standalone: %d partitions, want %d", n, DefaultPartitions)
	}
	ranges := []rdb.SlotRange{
		{Start: 0, End: 4000, Master: "127.0.0.1:7000"},
		{Start: 4001, End: 5460, Master: "127.0.0.1:7000"},
		{Start: 5461, End: 10922, Master: "127.0.0.1:7001"},
		{Start: 10923, End: 12000, Master: "127.0.0.1:7002"},
		{Start: 12001, End: 16383, Master: "127.0.0.1:7002"},
	}
	if n := defaultPartitions(ranges); n != 6 {
		t.Fatalf("3 masters in 5 ranges: %d partitions, want 6", n)
	}
	many := make([]rdb.SlotRange, 600)
	for i := range many {
		many[i] = rdb.SlotRange{Start: i, End: i, Master: "127.0.0.1:" + string(rune('a'+i%26)) + string(rune('a'+i/26))}
	}
	if n := defaultPartitions(many); n != MaxPartitions {
		t.Fatalf("600 masters: %d partitions, want the cap %d", n, MaxPartitions)
	}
}

package herald

import (
	"context"
	"errors"
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

// A partition marked down gets a keyless event once per downProbe as a
// probe, and is back in the rotation once an append to it succeeds;
// otherwise keyless traffic would never find a recovered shard.
func TestKeylessProbesDownPartition(t *testing.T) {
	c := testClient(t, 3)
	tp, err := c.topic(context.Background(), "t", true)
	if err != nil {
		t.Fatal(err)
	}
	c.health.record(tp, 1, errors.New("connection reset (simulated)"))
	for range 30 {
		if p := tp.healthyPartition(); p == 1 {
			t.Fatal("a partition just marked down got a keyless event")
		}
	}
	tp.downAt[1].Store(nanotime() - int64(2*downProbe)) // a probe is due
	probes := 0
	for range 30 {
		if tp.healthyPartition() == 1 {
			probes++
		}
	}
	if probes != 1 {
		t.Fatalf("partition 1 got %d probes in one interval, want 1", probes)
	}
	c.health.record(tp, 1, nil) // the probe's append succeeded
	seen := 0
	for range 30 {
		if tp.healthyPartition() == 1 {
			seen++
		}
	}
	if seen < 9 {
		t.Fatalf("partition 1 got %d of 30 keyless picks after it recovered, want about 10", seen)
	}
}

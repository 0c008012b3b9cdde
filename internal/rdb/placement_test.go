package rdb

import "testing"

func TestKeySlotMatchesRedis(t *testing.T) {
	// Values from CLUSTER KEYSLOT on redis-server 7.0.
	for key, want := range map[string]int{"foo": 12182, "orders": 105, "{user1000}.following": 3443, "{topic:3}:stream": 1738, "a{}b": 13694} {
		if got := KeySlot(key); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestBalancedTags(t *testing.T) {
	ranges := []SlotRange{{Start: 0, End: 5460, Master: "127.0.0.1:7001"}, {Start: 5461, End: 10922, Master: "127.0.0.1:7002"}, {Start: 10923, End: 16383, Master: "127.0.0.1:7003"}}
	tags := BalancedTags("orders", 6, ranges)
	count := map[string]int{}
	for p, tag := range tags {
		m := MasterOf(ranges, KeySlot("{"+tag+"}"))
		count[m]++
		if want := []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}[p%3]; m != want {
			t.Errorf("partition %d tag %q on %s, want %s", p, tag, m, want)
		}
	}
	if len(count) != 3 || count["127.0.0.1:7001"] != 2 {
		t.Fatalf("placement %v, want 2 per master", count)
	}
	if got := BalancedTags("orders", 2, nil); got[0] != "orders/0" || got[1] != "orders/1" {
		t.Fatalf("standalone tags %v", got)
	}
}

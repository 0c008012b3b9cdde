package rdb_test

import (
	"errors"
	"testing"

	"github.com/heraldbus/herald/internal/rdb"
)

// A recovery scan cut short (its connection lost on the second page) must
// leave the fence in place: the next attempt scans again and sends only what
// had not landed, never the whole batch.
func TestPlainRecoveryCutShortScansAgain(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	b := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: 7, StateTTL: 60000, DedupeIDs: make([]string, 3),
		Fields: [][]string{{"i", "s0", "d", "x"}, {"i", "s1", "d", "x"}, {"i", "s2", "d", "x"}}}
	// The lost attempt stored its first event; 1,500 entries of other
	// producers came after it, so the scan reaches it on its second page.
	if _, err := db.Do(ctx, "XADD", pk.Stream, "*", "i", "s0", "d", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Do(ctx, "EVAL", "for i = 1, 1500 do redis.call('XADD', KEYS[1], '*', 'd', 'other') end return 1", "1", pk.Stream); err != nil {
		t.Fatal(err)
	}
	var f rdb.Fence
	defer f.Close()
	f.LoseOn(1<<40, "127.0.0.1:1", 7) // no such connection: the kill finds nothing
	cut := 0
	defer rdb.SetScanPageHook(func() error {
		if cut++; cut == 1 {
			return errors.New("connection lost (simulated) on the scan's second page")
		}
		return nil
	})()
	if _, err := db.AppendPlain(ctx, &f, b, 0, 0); err == nil {
		t.Fatal("the cut scan reported success")
	}
	res, err := db.AppendPlain(ctx, &f, b, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Replay || res.Positions[0] == "" || res.Positions[2] == "" {
		t.Fatalf("retry after the cut scan: %+v; want the first event found and the rest appended", res)
	}
	v, err := db.Do(ctx, "XLEN", pk.Stream)
	if err != nil || v != int64(1503) {
		t.Fatalf("stream length %v (%v), want 1503: s0 stored once, s1 and s2 appended", v, err)
	}
	if cut != 2 {
		t.Fatalf("scan pages after the first: %d, want 2 (the cut one and the retry's)", cut)
	}
}

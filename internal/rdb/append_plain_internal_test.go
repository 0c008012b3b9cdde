package rdb

import "testing"

// A recovery may stop at the newest entry the lane stored before the lost
// batch, never at one of the lost batch's own; the newest of a batch's
// positions is compared as a stream id, not as text.
func TestLostAttemptStopsAtAnEarlierBatchOnly(t *testing.T) {
	c1 := connID{id: 1, addr: "127.0.0.1:1"}
	f := &Fence{conn: c1}
	b1 := &AppendBatch{Seq: 1, Fields: [][]string{{"i", "a", "d", "x"}, {"i", "b", "d", "x"}, {"i", "c", "d", "x"}, {"i", "e", "d", "x"}}}
	f.stored(b1, []string{"9-5", "", "10-0", "9-9"})
	if f.lastPos != "10-0" || f.lastEvent != "c" || f.lastSeq != 1 {
		t.Fatalf("stored: last %q (%q) of batch %d, want 10-0 (c) of batch 1", f.lastPos, f.lastEvent, f.lastSeq)
	}
	f.lostAttempt(2)
	if f.after != "10-0" || f.afterEvent != "c" || f.suspect != c1 || f.lostSeq != 2 {
		t.Fatalf("loss of batch 2: after %q (%q), suspect %+v, seq %d", f.after, f.afterEvent, f.suspect, f.lostSeq)
	}
	f.lostAttempt(2) // its retry lost too: the entry is still the lane's before batch 2
	if f.after != "10-0" {
		t.Fatalf("second loss of batch 2: after %q, want 10-0", f.after)
	}
	b2 := &AppendBatch{Seq: 2, Fields: [][]string{{"i", "f", "d", "x"}}}
	f.stored(b2, []string{"11-0"})
	f.lostAttempt(2) // lost after it was stored (a reply the writer gave up on)
	if f.after != "" {
		t.Fatalf("a loss of batch 2 may stop at its own entry %q", f.after)
	}
	f.stored(&AppendBatch{Seq: 3, Fields: [][]string{{"d", "x"}}}, []string{"12-0"})
	if f.lastPos != "11-0" {
		t.Fatal("an entry without an event id became the lane's last")
	}
	for _, c := range []struct {
		a, b string
		less bool
	}{{"9-0", "10-0", true}, {"10-0", "9-0", false}, {"10-1", "10-10", true}, {"10-2", "10-2", false}} {
		if idLess(c.a, c.b) != c.less {
			t.Errorf("idLess(%s, %s) = %v", c.a, c.b, !c.less)
		}
	}
}

package rdb

import (
	"testing"
	"time"
)

// A recovery may stop at entries the lane stored before the lost batch,
// never at one of the lost batch's own; besides the newest the lane keeps
// older entries, one between one and two of each of stopAges old; the
// newest of a batch's positions is compared as a stream id, not as text.
func TestLostAttemptStopsAtEarlierEntriesOnly(t *testing.T) {
	c1 := connID{id: 1, addr: "127.0.0.1:1"}
	f := &Fence{conn: c1}
	t0 := time.Unix(1000, 0)
	ev := func(ids ...string) *AppendBatch {
		b := &AppendBatch{}
		for _, id := range ids {
			b.Fields = append(b.Fields, []string{"i", id, "d", "x"})
		}
		return b
	}
	b1 := ev("a", "b", "c", "e")
	b1.Seq = 1
	f.stored(b1, []string{"9-5", "", "10-0", "9-9"}, t0)
	if f.newest.pos != "10-0" || f.newest.event != "c" || f.newest.seq != 1 {
		t.Fatalf("stored: newest %+v, want 10-0 (c) of batch 1", f.newest)
	}
	pos := func() []string {
		var p []string
		for _, s := range f.stops {
			p = append(p, s.pos)
		}
		return p
	}
	f.lostAttempt(2)
	if got := pos(); len(got) != 1 || got[0] != "10-0" || f.suspect != c1 || f.lostSeq != 2 {
		t.Fatalf("loss of batch 2: stops %v, suspect %+v, seq %d; want [10-0]", got, f.suspect, f.lostSeq)
	}
	f.lostAttempt(2) // its retry lost too: the entries are still the lane's before batch 2
	if got := pos(); len(got) != 1 {
		t.Fatalf("second loss of batch 2: stops %v", got)
	}
	// Batches 2, 3 and 4 stored 0.5 s, 1.2 s and 12 s later.
	for i, c := range []struct {
		seq int64
		pos string
		at  time.Duration
	}{{2, "11-0", 500 * time.Millisecond}, {3, "12-0", 1200 * time.Millisecond}, {4, "13-0", 12 * time.Second}} {
		b := ev(string(rune('f' + i)))
		b.Seq = c.seq
		f.stored(b, []string{c.pos}, t0.Add(c.at))
	}
	// Age 1 s: at 1.2 s 10-0 was kept and 12-0 came next; at 12 s 12-0
	// was kept and 13-0 came next. Age 10 s: 10-0 came next until 12 s,
	// then was kept, with 13-0 next.
	if f.aged[0][0].pos != "12-0" || f.aged[0][1].pos != "13-0" || f.aged[1][0].pos != "10-0" || f.aged[1][1].pos != "13-0" {
		t.Fatalf("aged entries %+v", f.aged)
	}
	f.lostAttempt(5)
	if got := pos(); len(got) != 3 || got[0] != "13-0" || got[1] != "12-0" || got[2] != "10-0" {
		t.Fatalf("loss of batch 5: stops %v, want [13-0 12-0 10-0]", got)
	}
	f.lostAttempt(4) // lost after it was stored: never its own entry
	if got := pos(); len(got) != 2 || got[0] != "12-0" || got[1] != "10-0" {
		t.Fatalf("loss of batch 4 after it was stored: stops %v, want [12-0 10-0], never its own 13-0", got)
	}
	b6 := &AppendBatch{Seq: 6, Fields: [][]string{{"d", "x"}}}
	f.stored(b6, []string{"14-0"}, t0.Add(13*time.Second))
	if f.newest.pos != "13-0" {
		t.Fatal("an entry without an event id became the lane's newest")
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

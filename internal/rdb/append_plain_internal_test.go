package rdb

import "testing"

// A recovery may stop at the lane's last stored events only for the first
// loss of a batch, on the connection that stored them; the newest of a
// batch's positions is compared as a stream id, not as text.
func TestLostAttemptStopsOnlyOnTheSameConnection(t *testing.T) {
	c1, c2 := connID{id: 1, addr: "127.0.0.1:1"}, connID{id: 2, addr: "127.0.0.1:2"}
	f := &Fence{conn: c1}
	f.stored([]string{"9-5", "", "10-0", "9-9"})
	if f.lastPos != "10-0" || f.lastConn != c1 {
		t.Fatalf("stored: last %q on %+v, want 10-0 on c1", f.lastPos, f.lastConn)
	}
	f.lostAttempt(2)
	if f.after != "10-0" || f.suspect != c1 || f.lostSeq != 2 {
		t.Fatalf("first loss: after %q, suspect %+v, seq %d", f.after, f.suspect, f.lostSeq)
	}
	f.lostAttempt(2) // its retry lost too
	if f.after != "" {
		t.Fatalf("second loss of batch 2 may stop at %q", f.after)
	}
	f.conn = c2 // a new connection that stored nothing yet
	f.lostAttempt(3)
	if f.after != "" {
		t.Fatalf("a loss on another connection may stop at %q", f.after)
	}
	f.stored([]string{"", ""})
	if f.lastPos != "10-0" || f.lastConn != c1 {
		t.Fatal("an append with no position moved the lane's last events")
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

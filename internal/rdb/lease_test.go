package rdb_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redistest"
)

func leaseDB(t *testing.T) (*rdb.DB, rdb.PartKeys, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	db, err := rdb.Open(ctx, rdb.Options{URL: redistest.URL(t), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db, db.Keys.Part("t/0"), ctx
}

// A lease is taken once, renewed and released only by its holder, and every
// tenure is logged with a growing token.
func TestLeaseAcquireRenewRelease(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	a, ok, err := db.LeaseAcquire(ctx, pk, "g", "a", "i1", 5000)
	if err != nil || !ok || a.Consumer != "a" || a.Token != 1 {
		t.Fatalf("first acquire: %+v %v %v", a, ok, err)
	}
	if held, ok, err := db.LeaseAcquire(ctx, pk, "g", "b", "i2", 5000); err != nil || ok || held.Consumer != "a" {
		t.Fatalf("second acquire while held: %+v %v %v", held, ok, err)
	}
	ok2, errs := db.LeaseRenew(ctx, "g", []rdb.LeaseRef{{Keys: pk, Value: a.Value}, {Keys: pk, Value: "1 0 b i2"}}, 5000)
	if errs[0] != nil || !ok2[0] || ok2[1] {
		t.Fatalf("renew = %v %v, want the holder's only", ok2, errs)
	}
	if done, err := db.LeaseRelease(ctx, pk, "g", "1 0 b i2"); err != nil || done {
		t.Fatalf("release by a non-holder = %v %v", done, err)
	}
	if l, ok, err := db.LeaseOf(ctx, pk, "g"); err != nil || !ok || l.Consumer != "a" || l.TTLMS <= 0 || l.TTLMS > 5000 {
		t.Fatalf("LeaseOf = %+v %v %v", l, ok, err)
	}
	if done, err := db.LeaseRelease(ctx, pk, "g", a.Value); err != nil || !done {
		t.Fatalf("release by the holder = %v %v", done, err)
	}
	b, ok, err := db.LeaseAcquire(ctx, pk, "g", "b", "i2", 100)
	if err != nil || !ok || b.Token != 2 {
		t.Fatalf("acquire after release: %+v %v %v", b, ok, err)
	}
	time.Sleep(150 * time.Millisecond) // the lease runs out
	if ok2, _ := db.LeaseRenew(ctx, "g", []rdb.LeaseRef{{Keys: pk, Value: b.Value}}, 100); ok2[0] {
		t.Fatal("renewed an expired lease")
	}
	hist, err := db.LeaseHistory(ctx, pk, "g")
	if err != nil || len(hist) != 3 || hist[0] != "acquire "+b.Value || hist[2] != "acquire "+a.Value {
		t.Fatalf("lease log = %q, %v", hist, err)
	}
}

// Heartbeats list the live consumers; one that stops heartbeating drops out
// after its time to live, one that leaves drops out at once.
func TestHeartbeatMembers(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	// "short" lives 1 s: long enough to be listed below however slow the
	// machine, short enough to see it go. The others live far longer than
	// the wait, so "leaves" can only drop out by leaving.
	if _, err := db.Heartbeat(ctx, pk, "g", "short", 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Heartbeat(ctx, pk, "g", "stays", 60000); err != nil {
		t.Fatal(err)
	}
	ms, err := db.Heartbeat(ctx, pk, "g", "leaves", 60000)
	if err != nil || len(ms) != 3 {
		t.Fatalf("members = %v %v", ms, err)
	}
	if _, err := db.Heartbeat(ctx, pk, "g", "leaves", 0); err != nil {
		t.Fatal(err)
	}
	var last []string
	if !redistest.Poll(5*time.Second, func() bool { // the short member's lease runs out: the thing tested
		last, err = db.Members(ctx, pk, "g")
		return err == nil && len(last) == 1 && last[0] == "stays"
	}) {
		t.Fatalf("members after expiry and leave = %v %v, want [stays]", last, err)
	}
}

// GroupLag counts the entries after a position from whichever end is
// nearer, a page of 1,000 at a time.
func TestGroupLagCountsFromBothEnds(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	var ids []string
	for i := 0; i < 2500; i++ {
		v, err := db.Do(ctx, "XADD", pk.Stream, "*", "d", strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v.(string))
	}
	for _, c := range []struct {
		last string
		want int64
	}{{"0-0", 2500}, {ids[0], 2499}, {ids[1199], 1300}, {ids[2200], 299}, {ids[2499], 0}, {"99999999999999-0", 0}} {
		lag, ok, err := db.GroupLag(ctx, pk.Stream, c.last)
		if err != nil || !ok || lag != c.want {
			t.Fatalf("lag after %s = %d %v %v, want %d", c.last, lag, ok, err, c.want)
		}
	}
	if lag, ok, err := db.GroupLag(ctx, db.Keys.Part("none/0").Stream, "0-0"); err != nil || !ok || lag != 0 {
		t.Fatalf("lag of a missing stream = %d %v %v", lag, ok, err)
	}
}

// Far from both ends (more than LagCap/2 entries each side) GroupLag gives
// up instead of holding Redis for long.
func TestGroupLagGivesUpFarFromBothEnds(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	n := rdb.LagCap + 2000
	if _, err := db.Do(ctx, "EVAL", "for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', 'd', 'x') end return 1",
		"1", pk.Stream, strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
	v, err := db.Do(ctx, "XRANGE", pk.Stream, "-", "+", "COUNT", strconv.Itoa(n/2))
	if err != nil {
		t.Fatal(err)
	}
	es := v.([]any)
	mid := es[len(es)-1].([]any)[0].(string)
	start := time.Now()
	if lag, ok, err := db.GroupLag(ctx, pk.Stream, mid); err != nil || ok || lag != -1 {
		t.Fatalf("lag from the middle of %d entries = %d %v %v, want given up", n, lag, ok, err)
	}
	t.Logf("gave up after %v", time.Since(start))
}

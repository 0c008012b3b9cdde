package rdb_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
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

// A lane whose client has no free connection in its pool gives up when its
// context ends, instead of waiting for one for ever, and appends once one
// is free again.
func TestPlainAppendPoolFull(t *testing.T) {
	db, cl, ctx := onePoolConnDB(t)
	var err error
	pk := db.Keys.Part("t/0")
	b := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: 1, StateTTL: 60000, DedupeIDs: make([]string, 1),
		Fields: [][]string{{"i", "e1", "d", "x"}}}
	held, release := cl.Dedicate() // the pool's one connection
	if err := held.Do(ctx, held.B().Ping().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	var f rdb.Fence
	defer f.Close()
	actx, acancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = db.AppendPlain(actx, &f, b, 0, 0)
	acancel()
	if !errors.Is(err, context.DeadlineExceeded) || !rdb.Transient(err) {
		t.Fatalf("append with the pool taken: %v, want the context's deadline, transient", err)
	}
	release()
	res, err := db.AppendPlain(ctx, &f, b, 0, 0)
	if err != nil || res.Positions[0] == "" {
		t.Fatalf("append once the pool had a connection again: %+v, %v", res, err)
	}
	if v, err := db.Do(ctx, "XLEN", pk.Stream); err != nil || v != int64(1) {
		t.Fatalf("stream length %v (%v), want 1", v, err)
	}
}

// A user that may run CLIENT INFO but not CLIENT KILL (an ACL such as
// -@dangerous) cannot fence a lost append: plain appends are refused
// before anything is written, and the caller takes the script.
func TestPlainAppendNeedsClientKill(t *testing.T) {
	srv := redistest.Own(t, redisproc.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := rdb.Open(ctx, rdb.Options{URL: srv.URL(), Namespace: "acl"})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Do(ctx, "ACL", "SETUSER", "pub", "on", ">pw", "+@all", "-client|kill", "~*", "&*"); err != nil {
		t.Fatal(err)
	}
	db, err := rdb.Open(ctx, rdb.Options{URL: fmt.Sprintf("redis://pub:pw@127.0.0.1:%d", srv.Port), Namespace: "acl"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pk := db.Keys.Part("t/0")
	b := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: 1, StateTTL: 60000, DedupeIDs: make([]string, 1),
		Fields: [][]string{{"i", "e1", "d", "x"}}}
	var f rdb.Fence
	defer f.Close()
	if _, err := db.AppendPlain(ctx, &f, b, 0, 0); !errors.Is(err, rdb.ErrPlainUnsupported) {
		t.Fatalf("plain append without CLIENT KILL: %v, want ErrPlainUnsupported", err)
	}
	if db.PlainSupported() {
		t.Fatal("PlainSupported after CLIENT KILL was refused")
	}
	if n, err := db.Do(ctx, "XLEN", pk.Stream); err != nil || n != int64(0) {
		t.Fatalf("stream length %v (%v), want 0: nothing written", n, err)
	}
}

// The recovery scan of a lost append finds what landed when the client's
// clock runs minutes ahead of Redis's (its event ids, UUIDv7, carry the
// client's time): it reads back by the older of the two clocks.
func TestPlainRecoveryWithClientClockAhead(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	ahead := time.Now().Add(5 * time.Minute).UnixMilli()
	id := func(i int) string {
		return fmt.Sprintf("%08x-%04x-7000-8000-%012x", ahead>>16, ahead&0xffff, i)
	}
	b := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: 3, StateTTL: 60000, DedupeIDs: make([]string, 2),
		Fields: [][]string{{"i", id(0), "d", "x"}, {"i", id(1), "d", "x"}}}
	// The lost attempt stored the first event; others came after it.
	if _, err := db.Do(ctx, "XADD", pk.Stream, "*", "i", id(0), "d", "x"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := db.Do(ctx, "XADD", pk.Stream, "*", "d", "other"); err != nil {
			t.Fatal(err)
		}
	}
	var f rdb.Fence
	defer f.Close()
	f.LoseOn(1<<40, "127.0.0.1:1", 3)
	res, err := db.AppendPlain(ctx, &f, b, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Replay || res.Positions[0] == "" || res.Positions[1] == "" {
		t.Fatalf("retry: %+v; want the first event found and the second appended", res)
	}
	if n, err := db.Do(ctx, "XLEN", pk.Stream); err != nil || n != int64(5) {
		t.Fatalf("stream length %v (%v), want 5: the first event stored once", n, err)
	}
}

// A lane of a DB that dials Redis itself appends plain batches on its own
// RESP connection, without a rueidis connection. When that connection is
// killed between batches, the next append fails with its outcome unknown
// and its retry fences and scans on the lane's rueidis connection, then
// sends: every event is stored once. A lost reply (Lost) is answered from
// the tail.
func TestPlainAppendOwnConnection(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	var f rdb.Fence
	defer f.Close()
	batch := func(seq int64, ids ...string) *rdb.AppendBatch {
		b := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: seq, StateTTL: 60000, DedupeIDs: make([]string, len(ids))}
		for _, id := range ids {
			b.Fields = append(b.Fields, []string{"i", id, "d", "x-" + id})
		}
		return b
	}
	res, err := db.AppendPlain(ctx, &f, batch(1, "a", "b", "c"), 0, 0)
	if err != nil || len(res.Positions) != 3 || res.Positions[2] == "" || res.Replay {
		t.Fatalf("first append: %+v, %v", res, err)
	}
	own, dc, id := f.OwnConn()
	if !own || dc || id == 0 {
		t.Fatalf("after a plain append: own connection %v, rueidis connection %v, id %d; want the own one only, identified", own, dc, id)
	}
	if _, err := db.Do(ctx, "CLIENT", "KILL", "ID", strconv.FormatInt(id, 10)); err != nil {
		t.Fatal(err)
	}
	b2 := batch(2, "d", "e")
	if _, err := db.AppendPlain(ctx, &f, b2, 0, 0); err == nil || !rdb.Transient(err) {
		t.Fatalf("append on the killed connection: %v; want a transient error (outcome unknown)", err)
	}
	got, err := db.AppendPlain(ctx, &f, b2, 0, 0)
	if err != nil || got.Positions[0] == "" || got.Positions[1] == "" || got.Replay {
		t.Fatalf("retry after the kill: %+v, %v; want both events appended now", got, err)
	}
	_, dc, id2 := f.OwnConn()
	if id2 == 0 || id2 == id || !dc {
		t.Fatalf("after the retry: own connection id %d (was %d), rueidis connection %v; want a new own connection and the fence's rueidis one", id2, id, dc)
	}
	f.Lost(2) // as if the reply of batch 2 had been lost
	again, err := db.AppendPlain(ctx, &f, b2, 0, 0)
	if err != nil || !again.Replay || again.Positions[0] != got.Positions[0] || again.Positions[1] != got.Positions[1] {
		t.Fatalf("retry of a batch whose reply was lost: %+v, %v; want it found in the tail at %v", again, err, got.Positions)
	}
	if n, err := db.Do(ctx, "XLEN", pk.Stream); err != nil || n != int64(5) {
		t.Fatalf("stream length %v (%v), want 5: every event stored once", n, err)
	}
}

// rawIdentity dials addr over plain TCP and returns the connection with
// its id and address on the server (CLIENT INFO).
func rawIdentity(t *testing.T, addr string) (net.Conn, *bufio.Reader, int64, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "CLIENT INFO\r\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	head, err := r.ReadString('\n') // $<length>
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	if err != nil {
		t.Fatalf("CLIENT INFO header %q", head)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	line := string(body[:n])
	var id int64
	var a string
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "id":
			id, _ = strconv.ParseInt(v, 10, 64)
		case "addr":
			a = v
		}
	}
	if id == 0 || a == "" {
		t.Fatalf("CLIENT INFO: %q", line)
	}
	return c, r, id, a
}

// On a cluster the fence's kill goes to the partition's master, also when
// it is the first command of the lane's rueidis connection (a batch the
// lane gave up, then the next batch): the suspect there is killed, and a
// later fence on the same connection (a keyed scan) works. A connection
// taken keyless first was bound to any node: the kill missed, and the
// next keyed command panicked (cross slot in a dedicated connection).
func TestPlainFenceOnClusterKillsOnTheSlotsMaster(t *testing.T) {
	ctx, db := clusterDB(t, "fence")
	ranges, err := db.SlotRanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	masters := map[string]bool{}
	for p := 0; len(masters) < 3 && p < 64; p++ {
		pk := db.Keys.Part("t/" + strconv.Itoa(p))
		master := rdb.MasterOf(ranges, rdb.KeySlot(pk.Stream))
		if masters[master] {
			continue
		}
		masters[master] = true
		raw, rr, id, addr := rawIdentity(t, master)
		var f rdb.Fence
		f.LoseOn(id, addr, 99) // batch 99 was lost on raw and given up
		b1 := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: 1, StateTTL: 60000, DedupeIDs: make([]string, 1), Fields: [][]string{{"i", "a", "d", "x"}}}
		if _, err := db.AppendPlain(ctx, &f, b1, 0, 0); err != nil {
			t.Fatalf("partition %d: append after a given-up batch: %v", p, err)
		}
		if _, err := fmt.Fprintf(raw, "PING\r\n"); err == nil {
			if l, err := rr.ReadString('\n'); err == nil {
				t.Fatalf("partition %d (master %s): the suspect connection answered %q after the fence; want it killed", p, master, l)
			}
		}
		f.LoseOn(1<<40, "127.0.0.1:1", 2) // batch 2's reply lost: its retry fences and scans
		b2 := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: 2, StateTTL: 60000, DedupeIDs: make([]string, 1), Fields: [][]string{{"i", "b", "d", "y"}}}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("partition %d: the second fence panicked: %v", p, r)
				}
			}()
			if _, err := db.AppendPlain(ctx, &f, b2, 0, 0); err != nil {
				t.Fatalf("partition %d: the second fence: %v", p, err)
			}
		}()
		f.Close()
	}
	if len(masters) < 3 {
		t.Fatalf("partitions reached %d masters, want 3", len(masters))
	}
}

// After the DB is closed, a lane dials no connection of its own: its
// append fails.
func TestPlainAppendAfterCloseDialsNothing(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	var f rdb.Fence
	defer f.Close()
	b := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: 1, StateTTL: 60000, DedupeIDs: make([]string, 1), Fields: [][]string{{"i", "a", "d", "x"}}}
	if _, err := db.AppendPlain(ctx, &f, b, 0, 0); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := db.AppendPlain(ctx, &f, b, 0, 0); err == nil {
		t.Fatal("an append after Close succeeded")
	}
	if _, err := db.AppendPlain(ctx, &f, b, 0, 0); err == nil {
		t.Fatal("a retry after Close succeeded")
	}
	if own, _, _ := f.OwnConn(); own {
		t.Fatal("the lane holds an open connection of its own after Close")
	}
}

// An error reply that is not transient (WRONGTYPE) fails the batch once
// every reply was read: the lane's own connection stays in step and the
// next batch goes out on it.
func TestPlainAppendRefusedKeepsConnectionInStep(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	var f rdb.Fence
	defer f.Close()
	if _, err := db.Do(ctx, "SET", pk.Stream, "not a stream"); err != nil {
		t.Fatal(err)
	}
	b := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: 1, StateTTL: 60000, DedupeIDs: make([]string, 3),
		Fields: [][]string{{"i", "a", "d", "x"}, {"i", "b", "d", "x"}, {"i", "c", "d", "x"}}}
	if _, err := db.AppendPlain(ctx, &f, b, 0, 0); err == nil || rdb.Transient(err) || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("append to a string key: %v; want the WRONGTYPE reply", err)
	}
	own, _, id := f.OwnConn()
	if !own || id == 0 {
		t.Fatalf("after a refused batch: own connection %v, id %d; want it kept", own, id)
	}
	if _, err := db.Do(ctx, "DEL", pk.Stream); err != nil {
		t.Fatal(err)
	}
	b.Seq = 2
	res, err := db.AppendPlain(ctx, &f, b, 0, 0)
	if err != nil || res.Positions[2] == "" || res.Replay {
		t.Fatalf("the next batch: %+v, %v", res, err)
	}
	if _, _, id2 := f.OwnConn(); id2 != id {
		t.Fatalf("the next batch went on connection %d, want %d (kept, in step)", id2, id)
	}
	if n, err := db.Do(ctx, "XLEN", pk.Stream); err != nil || n != int64(3) {
		t.Fatalf("XLEN %v (%v), want 3", n, err)
	}
}

// A lost attempt whose first XADDs were refused and whose later ones ran
// (a server that finished loading its data, or a slow script, while it
// read the pipeline: LOADING or BUSY for the first commands) stored events
// that are not a prefix of the batch. The retry finds them and sends only
// the others: every event stored once, every position known. Both ways of
// appending: on the lane's own connection, and on a given client's.
func TestPlainRecoveryFindsEventsThatAreNotAPrefix(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	given := givenClientDB(ctx, t, redistest.URL(t), redistest.Namespace(t)+"-given")
	own, _, _ := leaseDB(t)
	for name, db := range map[string]*rdb.DB{"own connection": own, "given client": given} {
		t.Run(name, func(t *testing.T) {
			pk := db.Keys.Part("t/0")
			id := func(i int) string { return fmt.Sprintf("0190a3b2-7c4e-7def-8abc-%012d", i) }
			b := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: 4, StateTTL: 60000, DedupeIDs: make([]string, 5)}
			for i := range 5 {
				b.Fields = append(b.Fields, []string{"i", id(i), "d", "x" + strconv.Itoa(i)})
			}
			// The lost attempt stored events 1, 2 and 4.
			landed := map[int]string{}
			for _, i := range []int{1, 2, 4} {
				p, err := db.Do(ctx, "XADD", pk.Stream, "*", "i", id(i), "d", "x"+strconv.Itoa(i))
				if err != nil {
					t.Fatal(err)
				}
				landed[i] = p.(string)
			}
			var f rdb.Fence
			defer f.Close()
			f.LoseOn(1<<40, "127.0.0.1:1", 4)
			res, err := db.AppendPlain(ctx, &f, b, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Replay || len(res.Positions) != 5 {
				t.Fatalf("retry: %+v; want a replay with five positions", res)
			}
			for i, p := range res.Positions {
				if p == "" || (landed[i] != "" && p != landed[i]) {
					t.Fatalf("position %d is %q (landed at %q): %+v", i, p, landed[i], res)
				}
			}
			// The stream holds each event once: 1, 2, 4 as they landed,
			// then 0 and 3.
			es, err := db.Do(ctx, "XRANGE", pk.Stream, "-", "+")
			if err != nil {
				t.Fatal(err)
			}
			var order []string
			for _, e := range es.([]any) {
				fv := e.([]any)[1].([]any)
				order = append(order, fv[1].(string)[len(fv[1].(string))-1:])
			}
			if got := strings.Join(order, ""); got != "12403" {
				t.Fatalf("stream order %q, want 12403: each event once, the missing ones after", got)
			}
			if f.Reordered() != 4 {
				t.Fatalf("the fence does not know that batch 4 was sent out of order (%d)", f.Reordered())
			}
		})
	}
}

// A batch sent out of order (above) and lost again: its first event now
// sits after later ones, so the recovery scan must not stop at it. Events
// 1 and 2 landed in the first attempt, 0 in the second (sent after them);
// the third attempt finds all three and sends only 3 and 4.
func TestPlainRecoveryOfAReorderedBatchReadsPastItsFirstEvent(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	id := func(i int) string { return fmt.Sprintf("0190a3b2-7c4e-7def-8abc-%012d", i) }
	b := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: 7, StateTTL: 60000, DedupeIDs: make([]string, 5)}
	for i := range 5 {
		b.Fields = append(b.Fields, []string{"i", id(i), "d", "x" + strconv.Itoa(i)})
	}
	for _, i := range []int{1, 2, 0} {
		if _, err := db.Do(ctx, "XADD", pk.Stream, "*", "i", id(i), "d", "x"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	var f rdb.Fence
	defer f.Close()
	f.SetReordered(7)
	f.LoseOn(1<<40, "127.0.0.1:1", 7)
	res, err := db.AppendPlain(ctx, &f, b, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range res.Positions {
		if p == "" {
			t.Fatalf("position %d unknown: %+v", i, res)
		}
	}
	if n, err := db.Do(ctx, "XLEN", pk.Stream); err != nil || n != int64(5) {
		t.Fatalf("stream length %v (%v), want 5: events 1 and 2 stored once, not sent again", n, err)
	}
}

// A lost batch is recovered by reading the tail back to the newest entry
// the lane stored before it: a long history before that entry is not read
// (it would be, a minute of it, by the time floor). The batch is still
// stored once.
func TestPlainRecoveryStopsAtTheLanesLastEvents(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	for i := range 3000 { // an older history: three pages
		if _, err := db.Do(ctx, "XADD", pk.Stream, "*", "d", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	batch := func(seq int64, from int) *rdb.AppendBatch { return idBatch(pk, seq, from, 2) }
	var f rdb.Fence
	defer f.Close()
	if _, err := db.AppendPlain(ctx, &f, batch(1, 0), 0, 0); err != nil {
		t.Fatal(err)
	}
	// Batch 2's reply is lost on the same connection; nothing of it landed.
	f.Lost(2)
	pages := 0
	defer rdb.SetScanPageHook(func() error { pages++; return nil })()
	res, err := db.AppendPlain(ctx, &f, batch(2, 2), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if pages != 0 {
		t.Fatalf("the recovery read %d pages after the first, want none: it stops at batch 1", pages)
	}
	if res.Positions[0] == "" || res.Positions[1] == "" {
		t.Fatalf("batch 2: %+v", res)
	}
	if n, err := db.Do(ctx, "XLEN", pk.Stream); err != nil || n != int64(3004) {
		t.Fatalf("stream length %v (%v), want 3004", n, err)
	}
}

// A lane's last entry that the stream no longer holds gives the recovery
// no place to stop: the stream deleted (by another client) after an entry
// an hour ahead of the clock made batch 1's id run ahead; batch 2, lost
// after it landed in the new stream with smaller ids, is found whole there
// and not sent again.
func TestPlainRecoveryAfterTheLanesLastEntryWasDeleted(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	ahead := time.Now().Add(time.Hour).UnixMilli()
	if _, err := db.Do(ctx, "XADD", pk.Stream, fmt.Sprintf("%d-0", ahead), "d", "future"); err != nil {
		t.Fatal(err)
	}
	batch := func(seq int64, from, n int) *rdb.AppendBatch { return idBatch(pk, seq, from, n) }
	var f rdb.Fence
	defer f.Close()
	if _, err := db.AppendPlain(ctx, &f, batch(1, 0, 1), 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Do(ctx, "DEL", pk.Stream); err != nil {
		t.Fatal(err)
	}
	// Batch 2 landed in the new stream, its replies lost on the lane's
	// connection.
	b2 := batch(2, 1, 2)
	for _, fv := range b2.Fields {
		if _, err := db.Do(ctx, "XADD", pk.Stream, "*", fv[0], fv[1], fv[2], fv[3]); err != nil {
			t.Fatal(err)
		}
	}
	f.Lost(2)
	if _, err := db.AppendPlain(ctx, &f, b2, 0, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := db.Do(ctx, "XLEN", pk.Stream); err != nil || n != int64(2) {
		t.Fatalf("stream length %v (%v), want 2: batch 2 stored once", n, err)
	}
}

// The entry a recovery stops at is matched by its event id too, not by its
// stream id alone: a recreated stream holding another entry at that id,
// newer than events of the lost batch, does not stop the scan before them.
func TestPlainRecoveryMatchesTheStopEntryByItsEvent(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	batch := func(seq int64, from, n int) *rdb.AppendBatch { return idBatch(pk, seq, from, n) }
	var f rdb.Fence
	defer f.Close()
	res, err := db.AppendPlain(ctx, &f, batch(1, 0, 1), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	x := res.Positions[0]
	ms, _, _ := strings.Cut(x, "-")
	before, _ := strconv.ParseInt(ms, 10, 64)
	if _, err := db.Do(ctx, "DEL", pk.Stream); err != nil {
		t.Fatal(err)
	}
	// Batch 2 landed in the recreated stream just before batch 1's id, and
	// another entry took that id.
	b2 := batch(2, 1, 2)
	for k, fv := range b2.Fields {
		if _, err := db.Do(ctx, "XADD", pk.Stream, fmt.Sprintf("%d-%d", before-1, k+1), fv[0], fv[1], fv[2], fv[3]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Do(ctx, "XADD", pk.Stream, x, "i", "other", "d", "x"); err != nil {
		t.Fatal(err)
	}
	f.Lost(2)
	if _, err := db.AppendPlain(ctx, &f, b2, 0, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := db.Do(ctx, "XLEN", pk.Stream); err != nil || n != int64(3) {
		t.Fatalf("stream length %v (%v), want 3: batch 2 found, not sent again", n, err)
	}
}

// After a failover to a replica that lagged, the lane's newest entry may
// be missing: the recovery stops at an older one it kept instead of
// reading the history before it.
func TestPlainRecoveryStopsAtAnOlderEntryWhenTheNewestIsGone(t *testing.T) {
	db, pk, ctx := leaseDB(t)
	for i := range 3000 { // an older history: three pages
		if _, err := db.Do(ctx, "XADD", pk.Stream, "*", "d", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	var f rdb.Fence
	defer f.Close()
	if _, err := db.AppendPlain(ctx, &f, idBatch(pk, 1, 0, 1), 0, 0); err != nil {
		t.Fatal(err)
	}
	res, err := db.AppendPlain(ctx, &f, idBatch(pk, 2, 1, 1), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Batch 2's entry never reached the promoted replica.
	if _, err := db.Do(ctx, "XDEL", pk.Stream, res.Positions[0]); err != nil {
		t.Fatal(err)
	}
	f.Lost(3)
	pages := 0
	defer rdb.SetScanPageHook(func() error { pages++; return nil })()
	if _, err := db.AppendPlain(ctx, &f, idBatch(pk, 3, 2, 2), 0, 0); err != nil {
		t.Fatal(err)
	}
	if pages != 0 {
		t.Fatalf("the recovery read %d pages after the first, want none: it stops at batch 1", pages)
	}
	if n, err := db.Do(ctx, "XLEN", pk.Stream); err != nil || n != int64(3003) {
		t.Fatalf("stream length %v (%v), want 3003", n, err)
	}
}

// testEventID is a fixed UUIDv7-shaped event id for test batches.
func testEventID(i int) string { return fmt.Sprintf("0190a3b2-7c4e-7def-8abc-%012d", i) }

// idBatch is plain batch seq of pk: events from..from+n-1 (testEventID),
// each with data "x".
func idBatch(pk rdb.PartKeys, seq int64, from, n int) *rdb.AppendBatch {
	b := &rdb.AppendBatch{Keys: pk, Producer: "p", Seq: seq, StateTTL: 60000, DedupeIDs: make([]string, n)}
	for i := from; i < from+n; i++ {
		b.Fields = append(b.Fields, []string{"i", testEventID(i), "d", "x"})
	}
	return b
}

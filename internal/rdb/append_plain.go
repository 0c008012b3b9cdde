package rdb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldbus/herald/internal/codec"
)

// The plain append: the single-event hot path. A batch whose events all
// carry ids that Herald generated (unique UUIDv7s, nothing to deduplicate)
// is sent as plain XADDs on the lane's dedicated connection (Fence), with
// no script and no state write: Redis does what a raw XADD costs.
//
// Idempotency moves to the slow path. When an attempt's outcome is unknown
// (a connection error or timeout between the send and the reply, or a
// failover), the writer retries the same batch; before that retry sends
// anything, AppendPlain (1) kills the connection the lost attempt went out
// on, by the id and address it learnt when that connection was dialed
// (CLIENT KILL ID .. ADDR ..), so that a copy still queued on the server
// can never run after this point, and (2) reads the partition's tail, on
// the same new connection and so after the kill, for the batch's event
// ids. Pipelined XADDs run in order, so what landed is a prefix of the
// batch; the rest is sent again. After a failover the old connection is on
// a node that is no longer the master (the kill finds nothing): what the
// old master took and did not replicate is discarded when it rejoins as a
// replica, and what the new master holds is found in its tail.

// testHookScanPage, set by tests, runs before each page of a recovery scan
// after the first; an error cuts the scan there, as a lost connection would.
var testHookScanPage func() error

// connID is a connection as the server knows it.
type connID struct {
	id   int64
	addr string // the client's address as the server sees it
}

// PlainEligible reports whether b can go through AppendPlain: no event is
// deduplicated (every event id was generated, so it names one event only)
// and MAXLEN ~ cannot trim the batch's own entries before the reply.
func (b *AppendBatch) PlainEligible() bool {
	if b.MaxLen > 0 && b.MaxLen < int64(len(b.Fields)) {
		return false
	}
	for i, f := range b.Fields {
		if b.DedupeIDs[i] != "" || len(f) < 2 || len(f)%2 != 0 {
			return false
		}
	}
	return true
}

// probeClientID is a client id no server reaches (ids count up from 1 per
// server start): killing it asks only whether the user may.
const probeClientID = "9223372036854775807"

// plainScanAge bounds how far back (by entry time, before the first
// event's send) a recovery reads the tail; plainScanMax bounds how many
// entries it reads. Both are far beyond any retry window.
const (
	plainScanAge = 60 * time.Second
	plainScanMax = 2_000_000
)

// AppendPlain appends b with pipelined XADDs on f's connection, followed by
// WAIT replicas timeoutMS when replicas > 0 (Acked is what WAIT answered;
// -1 when not asked). See the comment at the top of this file for how a
// retry after an unknown outcome stays exactly-once. An error whose outcome
// is unknown leaves f holding the lost connection's identity; the caller
// retries the same batch (same Seq) through AppendPlain.
func (db *DB) AppendPlain(ctx context.Context, f *Fence, b *AppendBatch, replicas, timeoutMS int64) (res AppendResult, err error) {
	if db.dialsOwn() {
		return db.appendPlainOwn(ctx, f, b, replicas, timeoutMS)
	}
	if err := f.take(ctx, db.lanes); err != nil {
		return res, err
	}
	if f.conn.id == 0 {
		// Learn the connection's identity before anything is written on it,
		// so that an append lost on it can be fenced.
		// (XLEN, a keyed read, binds a dedicated cluster connection to the
		// partition's slot before the keyless CLIENT commands.)
		// (CLIENT KILL of an id that cannot exist asks whether this user
		// may kill a connection, which the fence needs: an ACL such as
		// -@dangerous allows CLIENT INFO but not CLIENT KILL.)
		rs := f.dc.DoMulti(ctx, f.dc.B().ClientInfo().Build(), f.dc.B().Xlen().Key(b.Keys.Stream).Build(),
			f.dc.B().Arbitrary("CLIENT", "KILL").Args("ID", probeClientID, "ADDR", "0.0.0.0:0").Build())
		info, err := rs[0].ToString()
		for _, r := range []rueidis.RedisResult{rs[0], rs[2]} {
			if perr := r.Error(); perr != nil && r.NonRedisError() == nil && !Transient(perr) {
				// An error reply: this server cannot name or kill a connection.
				f.Close()
				db.noPlain.Store(true)
				return res, fmt.Errorf("%w: %v", ErrPlainUnsupported, perr)
			}
		}
		if err == nil {
			err = rs[1].Error()
		}
		if err == nil {
			err = rs[2].Error()
		}
		if err != nil {
			f.Close()
			return res, err
		}
		if f.conn, err = parseClientInfo(info); err != nil {
			f.Close()
			return res, err
		}
	}
	res, send, err := db.recoverLost(ctx, f, b)
	if err != nil {
		return res, err
	}
	n := send.count(len(b.Fields))
	cmds := make(rueidis.Commands, 0, n+3)
	maxLen := ""
	if b.MaxLen > 0 {
		maxLen = strconv.FormatInt(b.MaxLen, 10)
	}
	for j := range n {
		fv := b.Fields[send.at(j)]
		// (A builder appends to one shared command: build one way only.)
		x := f.dc.B().Xadd().Key(b.Keys.Stream)
		if maxLen != "" {
			cmds = append(cmds, withPairs(x.Maxlen().Almost().Threshold(maxLen).Id("*").FieldValue(), fv))
		} else {
			cmds = append(cmds, withPairs(x.Id("*").FieldValue(), fv))
		}
	}
	if b.MinID != "" {
		cmds = append(cmds, f.dc.B().Xtrim().Key(b.Keys.Stream).Minid().Almost().Threshold(b.MinID).Build())
	}
	if n == 0 && replicas > 0 {
		// Everything had landed: WAIT counts the writes of its own
		// connection, so write the lane's state (as a transactional append
		// does) for WAIT to cover the events before it.
		cmds = append(cmds, f.dc.B().Set().Key(b.Keys.Producer(b.Producer)).Value(strconv.FormatInt(b.Seq, 10)+"|*").PxMilliseconds(b.StateTTL).Build())
	}
	if replicas > 0 {
		cmds = append(cmds, f.dc.B().Wait().Numreplicas(replicas).Timeout(timeoutMS).Build())
	}
	if len(cmds) == 0 {
		f.stored(b, res.Positions, time.Now())
		return res, nil
	}
	rs := f.dc.DoMulti(ctx, cmds...)
	for j := range n {
		r := rs[j]
		p, err := r.ToString()
		if err != nil {
			if r.NonRedisError() != nil || Transient(err) {
				// The outcome of this XADD and of those after it is unknown.
				f.lostAttempt(b.Seq)
				f.drop()
			}
			return res, err
		}
		res.Positions[send.at(j)] = p
	}
	if replicas > 0 {
		n, err := rs[len(rs)-1].AsInt64()
		if err != nil {
			if rs[len(rs)-1].NonRedisError() != nil {
				// The events are stored, but a retry cannot know that from
				// this reply: fence and scan as after a lost XADD, so that
				// it finds them instead of sending them again.
				f.lostAttempt(b.Seq)
				f.drop()
			}
			return res, fmt.Errorf("WAIT after the append (the events are stored): %w", err)
		}
		res.Acked = n
	}
	f.stored(b, res.Positions, time.Now())
	return res, nil
}

// toSend is which events of a batch an attempt sends: those from index
// from on, or, when holes is set, those at the indices it lists (in the
// batch's order).
type toSend struct {
	from  int
	holes []int
}

// count is how many events of a batch of n are sent.
func (t toSend) count(n int) int {
	if t.holes != nil {
		return len(t.holes)
	}
	return n - t.from
}

// at is the batch index of the j-th event sent.
func (t toSend) at(j int) int {
	if t.holes != nil {
		return t.holes[j]
	}
	return t.from + j
}

// recoverLost fences f's suspect, when an earlier attempt was lost, and
// finds what of b landed (fencePlain, on the lane's rueidis connection).
// res is b's result with those positions filled in; send is what is left
// to send: the events after those found, or, when what landed is not a
// prefix of b, the events not found.
//
// What landed is a prefix unless the server refused some XADDs of the
// lost attempt and ran later ones: a reply of LOADING, BUSY or TRYAGAIN
// ends the reading of an attempt, and a server that finished loading its
// data (or a slow script) while reading a pipeline refuses its first
// commands and runs the rest. The events not found are sent then, after
// the later ones of the batch: nothing is stored twice, but two events of
// one key may land out of their order.
func (db *DB) recoverLost(ctx context.Context, f *Fence, b *AppendBatch) (res AppendResult, send toSend, err error) {
	var found []string
	if f.suspect.id != 0 {
		if err := f.takeFor(ctx, db.lanes, b.Keys.Stream); err != nil {
			return res, send, err
		}
		if found, err = db.fencePlain(ctx, f, b); err != nil {
			f.drop()
			return res, send, err
		}
	}
	res = AppendResult{Positions: make([]string, len(b.Fields)), Dup: noDups(len(b.Fields)), Acked: -1}
	k := 0
	for k < len(found) && found[k] != "" {
		k++
	}
	copy(res.Positions, found)
	send.from = k
	for i := k; i < len(found); i++ {
		if found[i] != "" {
			res.Replay = true
			// From here on the batch's first event may land after later
			// ones: a scan of a later loss of this batch reads down to its
			// floor instead of stopping at the first event (fencePlain).
			f.reordered = b.Seq
			send.holes = make([]int, 0, len(found)-k)
			for j := k; j < len(found); j++ {
				if found[j] == "" {
					send.holes = append(send.holes, j)
				}
			}
			break
		}
	}
	res.Replay = res.Replay || k > 0
	return res, send, nil
}

// KillSuspect fences the connection an earlier plain append of f's lane
// (partition keys) was lost on (CLIENT KILL), when there is one, before the lane sends a
// batch another way (the script): otherwise that lost append, still queued
// on the server, could run after the later batch and break the order of
// its keys. The lost batch was given up; nothing of it is looked for.
func (db *DB) KillSuspect(ctx context.Context, f *Fence, keys PartKeys) error {
	if f.suspect.id == 0 {
		return nil
	}
	if err := f.takeFor(ctx, db.lanes, keys.Stream); err != nil {
		return err
	}
	kill := f.dc.B().Arbitrary("CLIENT", "KILL").Args("ID", strconv.FormatInt(f.suspect.id, 10), "ADDR", f.suspect.addr).Build()
	if r := f.dc.Do(ctx, kill); r.Error() != nil {
		if r.NonRedisError() != nil {
			f.drop()
		}
		return r.Error()
	}
	f.suspect, f.scan = connID{}, nil
	return nil
}

// Lost records that the last plain append of batch seq on f has an
// unknown outcome (a reply lost after it was sent), as a connection error
// would: the next AppendPlain fences f's connection and reads the tail.
func (f *Fence) Lost(seq int64) {
	if f.conn.id != 0 {
		f.lostAttempt(seq)
	}
	f.drop()
}

// stopEntry is an entry a plain append of a lane stored: its stream id,
// its event id, the batch and when.
type stopEntry struct {
	pos, event string
	seq        int64
	at         time.Time
}

// stopAges are the ages of the older entries a lane keeps as places a
// recovery scan may stop at besides its newest: after a failover to a
// replica that lagged, the newest entries may be missing there, and an
// older one lets the scan stop all the same (a replica a second behind).
var stopAges = [...]time.Duration{time.Second, 10 * time.Second}

// lostAttempt makes f's connection the suspect of batch seq, whose outcome
// it left unknown, and gives its recovery scan the entries it may stop at:
// those the lane stored before this batch (Fence.stored), if the scan
// meets one of them itself (its stream id and event id). The lane stored
// it before it first sent batch seq, so a stream that still holds it held
// it then, and whatever of the batch landed in that stream, on whichever
// master and over whichever connection, was appended after it, with
// greater ids, and is newer in the tail. A stream that holds none of them
// (deleted since, or a promoted replica that had not received them) is
// read down to the time floor as before (fencePlain).
func (f *Fence) lostAttempt(seq int64) {
	f.stops = f.stops[:0]
	add := func(e stopEntry) {
		if e.pos != "" && e.seq != seq && !slices.Contains(f.stops, e) {
			f.stops = append(f.stops, e)
		}
	}
	add(f.newest)
	for k := range f.aged {
		add(f.aged[k][1])
		add(f.aged[k][0])
	}
	f.suspect, f.lostSeq, f.scan = f.conn, seq, nil
}

// stored records the newest entry of batch b that a plain append stored
// at now (at positions, per event of b): where a recovery of the lane's
// later batches may stop (lostAttempt). For each of stopAges, the entry
// kept as the one to come (aged[k][1]) becomes the kept one (aged[k][0])
// once it is that old, and this entry the one to come: the kept one is
// then at least one such age old (under two while the lane is busy).
func (f *Fence) stored(b *AppendBatch, positions []string, now time.Time) {
	newest := -1
	for i, p := range positions {
		if p != "" && (newest < 0 || idLess(positions[newest], p)) {
			newest = i
		}
	}
	if newest < 0 || len(b.Fields[newest]) < 2 || b.Fields[newest][0] != codec.FieldID {
		return
	}
	e := stopEntry{pos: positions[newest], event: b.Fields[newest][1], seq: b.Seq, at: now}
	f.newest = e
	for k, age := range stopAges {
		a := &f.aged[k]
		switch {
		case a[1].pos == "":
			a[1] = e
		case now.Sub(a[1].at) >= age:
			a[0], a[1] = a[1], e
		}
	}
}

// idLess reports whether stream id a comes before b ("ms-seq"; a malformed
// id counts as 0-0).
func idLess(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	return am < bm || (am == bm && as < bs)
}

func splitID(id string) (ms, seq uint64) {
	m, s, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(s, 10, 64)
	return ms, seq
}

// fencePlain kills the connection an earlier attempt was lost on and finds
// which events of b it stored: a position per event of b, "" for those not
// found (usually a prefix of b is found; see recoverLost). An attempt
// of another batch (one the lane gave up) is fenced the same way, and
// nothing of b can be in the stream yet.
//
// The scan reads the tail back, a page of 1,000 entries per round trip,
// until it meets b's first event (the batch's events landed in order, so
// every one that landed has been seen by then) or entries older than the
// first event's time (when the first event did not land, or when a retry
// of b sent events after later ones: f.reordered). A scan cut short by a lost connection keeps the
// fence (the next attempt must never send the batch whole) and its
// progress: the kill ran before its first page, so nothing of b can land
// behind the scan, and the next attempt goes on from where it stopped.
func (db *DB) fencePlain(ctx context.Context, f *Fence, b *AppendBatch) ([]string, error) {
	kill := f.dc.B().Arbitrary("CLIENT", "KILL").Args("ID", strconv.FormatInt(f.suspect.id, 10), "ADDR", f.suspect.addr).Build()
	if b.Seq != f.lostSeq {
		if err := f.dc.Do(ctx, kill).Error(); err != nil {
			return nil, err
		}
		f.suspect, f.scan = connID{}, nil
		return nil, nil
	}
	sc := f.scan
	if sc == nil || sc.seq != b.Seq {
		sc = &plainScan{seq: b.Seq, end: "+", found: make([]string, len(b.Fields)), stops: slices.Clone(f.stops)}
	}
	// The scan stops at entries older than the batch by plainScanAge, by
	// the older of two clocks: the client's (the first event's UUIDv7
	// time) and Redis's (the newest entry's id, read on the first page).
	// Either alone would stop too early when the other runs ahead of it.
	floorMS := eventMS(b.Fields[0][1])
	if sc.floorMS != 0 {
		floorMS = min(floorMS, sc.floorMS)
	}
	want := make(map[string]int, len(b.Fields))
	for i, fv := range b.Fields {
		want[fv[1]] = i
	}
	for sc.scanned < plainScanMax {
		read := f.dc.B().Xrevrange().Key(b.Keys.Stream).End(sc.end).Start("-").Count(1000).Build()
		var es []rueidis.XRangeEntry
		var err error
		if f.scan == nil {
			// The kill and the first page in one round trip, in this order.
			rs := f.dc.DoMulti(ctx, kill, read)
			if err := rs[0].Error(); err != nil {
				return nil, err
			}
			es, err = rs[1].AsXRange()
		} else {
			if testHookScanPage != nil {
				if err := testHookScanPage(); err != nil {
					return nil, err
				}
			}
			es, err = f.dc.Do(ctx, read).AsXRange()
		}
		if err != nil {
			return nil, err
		}
		f.scan = sc // the kill has run: a later attempt may go on from here
		if sc.floorMS == 0 && len(es) > 0 {
			sc.floorMS = entryMS(es[0].ID)
			floorMS = min(floorMS, sc.floorMS)
		}
		firstMS := floorMS - plainScanAge.Milliseconds()
		done := false
		for _, e := range es {
			if i, ok := want[e.FieldValues[b.Fields[0][0]]]; ok && sc.found[i] == "" {
				sc.found[i] = e.ID
				sc.n++
			}
			if sc.n == len(b.Fields) || (sc.found[0] != "" && b.Seq != f.reordered) || (firstMS > 0 && entryMS(e.ID) < firstMS) ||
				sc.meetsStop(e, b.Fields[0][0]) {
				done = true
				break
			}
		}
		if done || len(es) < 1000 {
			break
		}
		sc.scanned += len(es)
		sc.end = "(" + es[len(es)-1].ID
	}
	f.suspect, f.scan = connID{}, nil // fenced, and what landed is known
	return sc.found, nil
}

// plainScan is the progress of a recovery scan (fencePlain) for batch seq.
type plainScan struct {
	seq     int64
	end     string   // the next page ends before this position ("+": the tail)
	found   []string // positions of the batch's events found so far
	n       int      // how many found
	scanned int
	floorMS int64       // the newest entry's time when the scan began (Redis's clock)
	stops   []stopEntry // the scan ends when it meets one of these (Fence.lostAttempt)
}

// meetsStop reports whether e is one of the scan's stop entries: the same
// stream id and the same event id (field idField).
func (sc *plainScan) meetsStop(e rueidis.XRangeEntry, idField string) bool {
	for _, st := range sc.stops {
		if e.ID == st.pos && e.FieldValues[idField] == st.event {
			return true
		}
	}
	return false
}

// noDup backs the Dup of plain appends (never a duplicate): shared and
// read-only, so that a plain append allocates no []bool.
var noDup = make([]bool, 1024)

// noDups is n false values, shared when n is at most 1024.
func noDups(n int) []bool {
	if n <= len(noDup) {
		return noDup[:n:n]
	}
	return make([]bool, n)
}

// pairAdder is a command builder that takes field/value pairs.
type pairAdder[T any] interface {
	FieldValue(field, value string) T
	Build() rueidis.Completed
}

// withPairs adds the field/value pairs fv to an XADD and builds it.
func withPairs[T pairAdder[T]](b T, fv []string) rueidis.Completed {
	for j := 0; j+1 < len(fv); j += 2 {
		b = b.FieldValue(fv[j], fv[j+1])
	}
	return b.Build()
}

// parseClientInfo reads the id and address of a CLIENT INFO line.
func parseClientInfo(info string) (connID, error) {
	var c connID
	info = strings.TrimPrefix(info, "txt:") // a RESP3 verbatim string
	for _, kv := range strings.Fields(info) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "id":
			c.id, _ = strconv.ParseInt(v, 10, 64)
		case "addr":
			c.addr = v
		}
	}
	if c.id == 0 || c.addr == "" {
		return c, errors.New("CLIENT INFO answered without id or addr")
	}
	return c, nil
}

// entryMS is the millisecond part of a stream id.
func entryMS(id string) int64 {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return n
}

// eventMS is the millisecond time of a UUIDv7 event id (0 when it is not one).
func eventMS(id string) int64 {
	h := strings.ReplaceAll(id, "-", "")
	if len(h) < 12 {
		return 0
	}
	n, err := strconv.ParseInt(h[:12], 16, 64)
	if err != nil {
		return 0
	}
	return n
}

package rdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// Fence is one producer lane's connection for transactional appends: a
// dedicated connection that keeps a WATCH on the lane's state key between
// batches. A batch goes out as MULTI, its XADDs, SET state, EXEC and a new
// WATCH, in one round trip. The WATCH makes an attempt that reaches Redis
// late (after the client gave it up for lost and sent the batch again on
// another connection) abort instead of storing the batch twice: every
// append of the lane changes the state key after that attempt's WATCH. The
// zero Fence is ready; Close returns its connection.
type Fence struct {
	dc     rueidis.DedicatedClient
	cancel func()
	armed  bool // the WATCH is in place and last is the state it saw
	last   int64

	// The plain appends (append_plain.go): the connection's identity on the
	// server, learnt when it is dialed, and the identity of a connection an
	// append was lost on, to be killed before anything else is sent.
	conn    connID
	suspect connID
	lostSeq int64      // the batch sequence whose outcome suspect left unknown
	scan    *plainScan // a recovery scan of lostSeq cut short, to go on with
	// reordered is a batch sequence whose retry sent events the recovery
	// had not found after later ones that had landed: its events no longer
	// sit in the stream in the batch's order (recoverLost).
	reordered int64
	// Entries the lane's plain appends stored, where a recovery scan of a
	// later batch may stop (Fence.stored): the newest, and for each of
	// stopAges one at least that old (aged[k][0]) and the one to replace
	// it (aged[k][1]); stops are those a scan of lostSeq may stop at.
	newest stopEntry
	aged   [len(stopAges)][2]stopEntry
	stops  []stopEntry

	// own is the lane's own RESP connection for plain appends, where
	// Herald dials Redis itself (append_own.go); conn is then its identity.
	own *ReadConn
}

// Close returns the connection to the pool (and closes the lane's own
// connection).
func (f *Fence) Close() {
	if f.cancel != nil {
		f.cancel()
	}
	f.closeOwn()
	f.dc, f.cancel, f.armed, f.conn = nil, nil, false, connID{}
}

// drop closes the connection for good (it never goes back to the pool):
// after an unknown outcome it is about to be killed on the server.
func (f *Fence) drop() {
	if f.dc != nil {
		f.dc.Close()
	}
	f.Close()
}

// Disarm makes the next AppendMulti read the state first, for example
// after the lane appended through the script.
func (f *Fence) Disarm() { f.armed = false }

// MultiEligible reports whether b can go through AppendMulti: every event
// holds only an id and data, none is deduplicated, and MAXLEN ~ cannot
// trim the batch's own entries before EXEC answers.
func (b *AppendBatch) MultiEligible() bool {
	if b.MaxLen > 0 && b.MaxLen < int64(len(b.Fields)) {
		return false
	}
	for i, f := range b.Fields {
		if b.DedupeIDs[i] != "" || len(f) != 4 {
			return false
		}
	}
	return true
}

// AppendMulti appends b with a WATCH-guarded MULTI/EXEC on f's connection
// (see Fence), idempotently like stream_append.lua: a batch whose sequence
// the state shows as appended is answered from the stream (Replay), and the
// state records "<seq>|*" (positions are not stored; a replay finds them by
// the batch's event ids). Errors leave f closed; the caller retries.
func (db *DB) AppendMulti(ctx context.Context, f *Fence, b *AppendBatch) (res AppendResult, err error) {
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	state := b.Keys.Producer(b.Producer)
	for attempt := 0; attempt < 3; attempt++ {
		if err := f.take(ctx, db.lanes); err != nil {
			return res, err
		}
		if !f.armed {
			// UNWATCH first: a WATCH whose key was touched stays dirty until
			// EXEC, DISCARD or UNWATCH, whatever is watched after it.
			rs := f.dc.DoMulti(ctx, f.dc.B().Unwatch().Build(), f.dc.B().Watch().Key(state).Build(), f.dc.B().Get().Key(state).Build())
			for _, r := range rs[:2] {
				if err := r.Error(); err != nil {
					return res, err
				}
			}
			st, err := rs[2].ToString()
			if err != nil && !rueidis.IsRedisNil(err) {
				return res, err
			}
			f.last = stateSeq(st)
			f.armed = true
		}
		if f.last >= b.Seq {
			return db.findBatch(ctx, b)
		}
		cmds := make(rueidis.Commands, 0, len(b.Fields)+5)
		cmds = append(cmds, f.dc.B().Multi().Build())
		for _, fv := range b.Fields {
			if b.MaxLen > 0 {
				cmds = append(cmds, f.dc.B().Xadd().Key(b.Keys.Stream).Maxlen().Almost().Threshold(strconv.FormatInt(b.MaxLen, 10)).
					Id("*").FieldValue().FieldValue(fv[0], fv[1]).FieldValue(fv[2], fv[3]).Build())
			} else {
				cmds = append(cmds, f.dc.B().Xadd().Key(b.Keys.Stream).Id("*").FieldValue().FieldValue(fv[0], fv[1]).FieldValue(fv[2], fv[3]).Build())
			}
		}
		if b.MinID != "" {
			cmds = append(cmds, f.dc.B().Xtrim().Key(b.Keys.Stream).Minid().Almost().Threshold(b.MinID).Build())
		}
		seq := strconv.FormatInt(b.Seq, 10)
		cmds = append(cmds, f.dc.B().Set().Key(state).Value(seq+"|*").PxMilliseconds(b.StateTTL).Build(),
			f.dc.B().Exec().Build(), f.dc.B().Watch().Key(state).Build())
		rs := f.dc.DoMulti(ctx, cmds...)
		f.armed = false
		for _, r := range rs[:len(rs)-2] { // MULTI and the QUEUED replies
			if err := r.Error(); err != nil {
				return res, err
			}
		}
		arr, err := rs[len(rs)-2].ToArray()
		if rueidis.IsRedisNil(err) {
			// The state changed since the WATCH: an earlier attempt of this
			// lane landed, or the lane appended through the script. Read it.
			continue
		}
		if err != nil {
			return res, err
		}
		if werr := rs[len(rs)-1].Error(); werr == nil {
			f.armed, f.last = true, b.Seq
		}
		if len(arr) < len(b.Fields) {
			return res, fmt.Errorf("EXEC answered %d replies for %d appends", len(arr), len(b.Fields))
		}
		res = AppendResult{Positions: make([]string, len(b.Fields)), Dup: make([]bool, len(b.Fields)), Acked: -1}
		for i := range b.Fields {
			if res.Positions[i], err = arr[i].ToString(); err != nil {
				return res, err
			}
		}
		return res, nil
	}
	return res, errors.New("the lane's state kept changing under its WATCH")
}

// stateSeq is the sequence number at the start of a producer state
// ("<seq>|..."), 0 for none.
func stateSeq(st string) int64 {
	seq, _, _ := strings.Cut(st, "|")
	n, _ := strconv.ParseInt(seq, 10, 64)
	return n
}

// findScan bounds how many entries a replay looks through, from the end of
// the stream, for the batch it must answer.
const findScan = 100000

// findBatch answers a batch that an earlier attempt appended: its entries
// are contiguous (one transaction), so the entry holding its first event id
// and the n-1 after it are its positions. When the batch is no longer
// within the last findScan entries (trimmed, or buried), the positions are
// empty: the events are stored, their ids are unknown.
func (db *DB) findBatch(ctx context.Context, b *AppendBatch) (AppendResult, error) {
	res := AppendResult{Replay: true, Positions: make([]string, len(b.Fields)), Dup: make([]bool, len(b.Fields)), Acked: -1}
	firstID := b.Fields[0][1]
	end := "+"
	for scanned := 0; scanned < findScan; {
		es, err := db.c.Do(ctx, db.c.B().Xrevrange().Key(b.Keys.Stream).End(end).Start("-").Count(1000).Build()).AsXRange()
		if err != nil {
			return res, err
		}
		for _, e := range es {
			if e.FieldValues[b.Fields[0][0]] != firstID {
				continue
			}
			after, err := db.c.Do(ctx, db.c.B().Xrange().Key(b.Keys.Stream).Start(e.ID).End("+").Count(int64(len(b.Fields))).Build()).AsXRange()
			if err != nil {
				return res, err
			}
			for i := range min(len(after), len(b.Fields)) {
				res.Positions[i] = after[i].ID
			}
			return res, nil
		}
		if len(es) < 1000 {
			break
		}
		scanned += len(es)
		end = "(" + es[len(es)-1].ID
	}
	return res, nil
}

// errPoolFull is a lane that found no free connection in the client's pool.
var errPoolFull = errors.New("rdb: no connection of the client's pool came free; raise its BlockingPoolSize (each published partition's lanes hold up to 4, each partition reader 1)")

// take gives f a dedicated connection of c when it has none. rueidis waits
// for a free connection of the pool without a context, so the wait runs
// apart and ends with ctx or, when ctx has no deadline, after
// ConnWriteTimeout (errPoolFull, transient: the caller retries within its
// publish timeout); a connection that comes after is given back.
func (f *Fence) take(ctx context.Context, c rueidis.Client) error {
	if f.dc != nil {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, ConnWriteTimeout, errPoolFull)
		defer cancel()
	}
	dc, release, err := dedicate(ctx, c)
	if err != nil {
		return err
	}
	f.dc, f.cancel = dc, release
	return nil
}

// takeFor is take for the partition whose keys include key: a connection
// just taken first runs a keyed command (XLEN key), so that on a cluster
// rueidis binds it to that slot's master. A keyless command first (CLIENT
// KILL) would bind it to any node, and a keyed one after that to another
// slot panics (rueidis refuses cross-slot commands on a dedicated
// connection).
func (f *Fence) takeFor(ctx context.Context, c rueidis.Client, key string) error {
	if f.dc != nil {
		return nil
	}
	if err := f.take(ctx, c); err != nil {
		return err
	}
	if r := f.dc.Do(ctx, f.dc.B().Xlen().Key(key).Build()); r.Error() != nil {
		if r.NonRedisError() != nil {
			f.dc.Close() // never back to the pool
		}
		f.cancel()
		f.dc, f.cancel, f.armed = nil, nil, false
		return r.Error()
	}
	return nil
}

// dedicate is c.Dedicate, given up when ctx ends first (context.Cause).
func dedicate(ctx context.Context, c rueidis.Client) (rueidis.DedicatedClient, func(), error) {
	type taken struct {
		dc      rueidis.DedicatedClient
		release func()
	}
	got := make(chan taken, 1)
	go func() {
		dc, release := c.Dedicate()
		got <- taken{dc, release}
	}()
	select {
	case t := <-got:
		return t.dc, t.release, nil
	case <-ctx.Done():
		go func() { (<-got).release() }()
		return nil, nil, context.Cause(ctx)
	}
}

package rdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/heraldbus/herald/internal/codec"
)

// Entry is one stream entry as read from Redis.
type Entry struct {
	Stream string   // the key it was read from
	ID     string   // its stream position
	Pairs  []string // field/value pairs; nil when the entry was deleted (trimmed) while pending
}

// AppendBatch is one batch for stream_append.lua.
type AppendBatch struct {
	Keys      PartKeys
	Producer  string
	Seq       int64
	Confirmed int64 // every batch up to this sequence is settled (see stream_append.lua)
	MaxLen    int64
	MinID     string
	DedupeMS  int64
	StateTTL  int64
	DedupeIDs []string   // per event, "" = not deduplicated
	Fields    [][]string // per event, field/value pairs
}

// AppendResult is what stream_append.lua answered.
type AppendResult struct {
	Replay    bool     // the batch had been applied before (a retried send)
	Positions []string // per event
	Dup       []bool   // per event: an earlier append of the same dedupe id
	Acked     int64    // replicas that acknowledged (WAIT); -1 when not asked
}

func (b *AppendBatch) args() []string {
	// Short layouts when every event holds only its id and data, and no
	// event or every event is deduplicated (always by its id).
	short, plain, unique := true, true, true
	n := 10
	for i, f := range b.Fields {
		n += 2 + len(f)
		short = short && len(f) == 4 && f[0] == codec.FieldID && f[2] == codec.FieldData
		plain = plain && b.DedupeIDs[i] == ""
		unique = unique && b.DedupeIDs[i] != "" && len(f) > 1 && b.DedupeIDs[i] == f[1]
	}
	layout := "g"
	if short && (plain || unique) {
		layout, n = "s", 10+2*len(b.Fields)
		if unique {
			layout = "u"
		}
	}
	args := make([]string, 0, n)
	args = append(args, strconv.FormatInt(b.Seq, 10), strconv.FormatInt(b.MaxLen, 10), b.MinID,
		strconv.FormatInt(b.DedupeMS, 10), b.Keys.DedupePrefix(), strconv.FormatInt(b.StateTTL, 10),
		strconv.FormatInt(b.Confirmed, 10), strconv.Itoa(len(b.Fields)), layout)
	for i, f := range b.Fields {
		if layout != "g" {
			args = append(args, f[1], f[3])
			continue
		}
		args = append(args, b.DedupeIDs[i], strconv.Itoa(len(f)))
		args = append(args, f...)
	}
	return args
}

func (b *AppendBatch) keys() []string { return []string{b.Keys.Stream, b.Keys.Producer(b.Producer)} }

// Append runs stream_append.lua for one batch.
func (db *DB) Append(ctx context.Context, b *AppendBatch) (AppendResult, error) {
	return b.parse(scriptAppend.Exec(ctx, db.c, b.keys(), b.args()))
}

// AppendReplicated runs stream_append.lua and then WAIT replicas timeoutMS on
// the same connection (WAIT is keyless: it must follow the writes on the
// connection that made them). Acked in the result is what WAIT answered.
func (db *DB) AppendReplicated(ctx context.Context, b *AppendBatch, replicas, timeoutMS int64) (AppendResult, error) {
	var res AppendResult
	keys, args := b.keys(), b.args()
	err := db.c.Dedicated(func(dc rueidis.DedicatedClient) error {
		wait := dc.B().Wait().Numreplicas(replicas).Timeout(timeoutMS).Build()
		rs := dc.DoMulti(ctx, dc.B().Evalsha().Sha1(scriptSHA["stream_append"]).Numkeys(2).Key(keys...).Arg(args...).Build(), wait)
		if replyPrefix(rs[0].Error(), "NOSCRIPT") { // script cache lost (restart, failover): send the source
			wait = dc.B().Wait().Numreplicas(replicas).Timeout(timeoutMS).Build()
			rs = dc.DoMulti(ctx, dc.B().Eval().Script(scriptSrc["stream_append"]).Numkeys(2).Key(keys...).Arg(args...).Build(), wait)
		}
		var err error
		if res, err = b.parse(rs[0]); err != nil {
			return err
		}
		n, err := rs[1].AsInt64()
		if err != nil {
			return fmt.Errorf("WAIT after the append (the events are stored): %w", err)
		}
		res.Acked = n
		return nil
	})
	return res, err
}

func (b *AppendBatch) parse(r rueidis.RedisResult) (AppendResult, error) {
	arr, err := r.ToArray()
	if err != nil {
		return AppendResult{}, err
	}
	if len(arr) != len(b.Fields)+1 {
		return AppendResult{}, fmt.Errorf("stream_append: %d replies for %d events", len(arr)-1, len(b.Fields))
	}
	status, err := arr[0].ToString()
	if err != nil {
		return AppendResult{}, err
	}
	res := AppendResult{Replay: status == "replay", Positions: make([]string, len(b.Fields)), Dup: make([]bool, len(b.Fields)), Acked: -1}
	for i := range b.Fields {
		p, err := arr[i+1].ToString()
		if err != nil {
			return AppendResult{}, err
		}
		if strings.HasPrefix(p, "=") {
			p, res.Dup[i] = p[1:], true
		}
		res.Positions[i] = p
	}
	return res, nil
}

// EnsureGroup creates group on the partition stream and on the group's retry
// stream (both created when missing). start is "$" (new events only) or "0".
func (db *DB) EnsureGroup(ctx context.Context, pk PartKeys, group, start string) error {
	cmds := rueidis.Commands{
		db.c.B().XgroupCreate().Key(pk.Stream).Group(group).Id(start).Mkstream().Build(),
		db.c.B().XgroupCreate().Key(pk.Retry(group)).Group(group).Id("0").Mkstream().Build(),
	}
	for _, r := range db.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil && !IsBusyGroup(err) {
			return err
		}
	}
	return nil
}

// ReadGroup reads new entries for a consumer from the partition stream and
// the group's retry stream (same slot, one command), blocking up to blockMS.
func (db *DB) ReadGroup(ctx context.Context, pk PartKeys, group, consumer string, count, blockMS int64) ([]Entry, error) {
	cmd := db.c.B().Xreadgroup().Group(group, consumer).Count(count).Block(blockMS).
		Streams().Key(pk.Stream, pk.Retry(group)).Id(">", ">").Build()
	return parseXRead(db.c.Do(ctx, cmd))
}

// ReadOwnPending re-reads entries already delivered to consumer and not acked
// (the consumer's PEL), for a restart under the same consumer name.
func (db *DB) ReadOwnPending(ctx context.Context, pk PartKeys, group, consumer string, count int64) ([]Entry, error) {
	cmd := db.c.B().Xreadgroup().Group(group, consumer).Count(count).
		Streams().Key(pk.Stream, pk.Retry(group)).Id("0", "0").Build()
	return parseXRead(db.c.Do(ctx, cmd))
}

func parseXRead(r rueidis.RedisResult) ([]Entry, error) {
	msg, err := r.ToMessage()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []Entry
	add := func(key string, entries rueidis.RedisMessage) error {
		es, err := entries.ToArray()
		if err != nil {
			return err
		}
		for _, e := range es {
			en, err := parseEntry(key, e)
			if err != nil {
				return err
			}
			out = append(out, en)
		}
		return nil
	}
	if msg.IsMap() {
		m, err := msg.ToMap()
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			if err := add(k, v); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	arr, err := msg.ToArray()
	if err != nil {
		return nil, err
	}
	for _, s := range arr {
		kv, err := s.ToArray()
		if err != nil || len(kv) != 2 {
			return nil, fmt.Errorf("XREADGROUP: unexpected reply shape")
		}
		k, err := kv[0].ToString()
		if err != nil {
			return nil, err
		}
		if err := add(k, kv[1]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func parseEntry(key string, e rueidis.RedisMessage) (Entry, error) {
	pair, err := e.ToArray()
	if err != nil || len(pair) != 2 {
		return Entry{}, fmt.Errorf("stream entry: unexpected reply shape")
	}
	id, err := pair[0].ToString()
	if err != nil {
		return Entry{}, err
	}
	en := Entry{Stream: key, ID: id}
	if pair[1].IsNil() {
		return en, nil
	}
	fv, err := pair[1].ToArray()
	if err != nil {
		return Entry{}, err
	}
	en.Pairs = make([]string, len(fv))
	for i := range fv {
		if en.Pairs[i], err = fv[i].ToString(); err != nil {
			return Entry{}, err
		}
	}
	return en, nil
}

func parseEntries(key string, r rueidis.RedisResult) ([]Entry, error) {
	arr, err := r.ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(arr))
	for _, e := range arr {
		en, err := parseEntry(key, e)
		if err != nil {
			return nil, err
		}
		out = append(out, en)
	}
	return out, nil
}

// Ack is a set of positions to acknowledge on one stream.
type Ack struct {
	Stream string
	Group  string
	IDs    []string
	Delete bool // also XDEL (group retry streams)
}

// AckMany acknowledges many streams in one pipelined round trip.
func (db *DB) AckMany(ctx context.Context, acks []Ack) error {
	cmds := make(rueidis.Commands, 0, len(acks)+2)
	for _, a := range acks {
		cmds = append(cmds, db.c.B().Xack().Key(a.Stream).Group(a.Group).Id(a.IDs...).Build())
		if a.Delete {
			cmds = append(cmds, db.c.B().Xdel().Key(a.Stream).Id(a.IDs...).Build())
		}
	}
	var first error
	for _, r := range db.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Failure describes a failed delivery for delivery_fail.lua.
type Failure struct {
	Keys        PartKeys
	Source      string // stream the entry came from
	Group       string
	ID          string
	NextAttempt int
	DueMS       int64 // 0 = dead-letter now
	Err         string
	Origin      string
	NowMS       int64
	DLQMaxLen   int64
}

// Fail runs delivery_fail.lua: "scheduled", "dead", "gone" or "settled".
func (db *DB) Fail(ctx context.Context, f Failure) (string, error) {
	del := "0"
	if f.Keys.IsRetry(f.Source) {
		del = "1"
	}
	return scriptFail.Exec(ctx, db.c, []string{f.Source, f.Keys.Schedule(f.Group), f.Keys.DLQ},
		[]string{f.Group, f.ID, strconv.Itoa(f.NextAttempt), strconv.FormatInt(f.DueMS, 10), f.Err, f.Origin,
			strconv.FormatInt(f.NowMS, 10), del, strconv.FormatInt(f.DLQMaxLen, 10), strconv.Itoa(f.NextAttempt - 1)}).ToString()
}

// Promote moves due retries of group on each partition into the group's
// retry streams, in one pipelined round trip. It returns the number moved and
// the earliest next due time in ms (-1 when nothing is scheduled).
func (db *DB) Promote(ctx context.Context, parts []PartKeys, group string, nowMS int64) (int, int64, error) {
	execs := make([]rueidis.LuaExec, len(parts))
	for i, pk := range parts {
		execs[i] = rueidis.LuaExec{Keys: []string{pk.Schedule(group), pk.Retry(group)},
			Args: []string{strconv.FormatInt(nowMS, 10), "500"}}
	}
	moved, next := 0, int64(-1)
	var first error
	for _, r := range scriptPromote.ExecMulti(ctx, db.c, execs...) {
		arr, err := r.ToArray()
		if err == nil && len(arr) != 2 {
			err = errors.New("retry_promote: unexpected reply")
		}
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		m, _ := arr[0].AsInt64()
		n, _ := arr[1].AsInt64()
		moved += int(m)
		if n >= 0 && (next < 0 || n < next) {
			next = n
		}
	}
	return moved, next, first
}

// AutoClaim takes over entries of group on stream idle for at least minIdleMS
// (their consumer died). Entries deleted from the stream while pending are
// removed from the PEL by Redis and counted in deleted.
func (db *DB) AutoClaim(ctx context.Context, stream, group, consumer string, minIdleMS int64, start string, count int64) (entries []Entry, next string, deleted int, err error) {
	cmd := db.c.B().Xautoclaim().Key(stream).Group(group).Consumer(consumer).MinIdleTime(strconv.FormatInt(minIdleMS, 10)).
		Start(start).Count(count).Build()
	arr, err := db.c.Do(ctx, cmd).ToArray()
	if err != nil {
		return nil, "", 0, err
	}
	if len(arr) < 2 {
		return nil, "", 0, errors.New("XAUTOCLAIM: unexpected reply")
	}
	if next, err = arr[0].ToString(); err != nil {
		return nil, "", 0, err
	}
	es, err := arr[1].ToArray()
	if err != nil {
		return nil, "", 0, err
	}
	for _, e := range es {
		if e.IsNil() {
			deleted++
			continue
		}
		en, err := parseEntry(stream, e)
		if err != nil {
			return nil, "", 0, err
		}
		entries = append(entries, en)
	}
	if len(arr) > 2 {
		if ds, err := arr[2].ToArray(); err == nil {
			deleted += len(ds)
		}
	}
	return entries, next, deleted, nil
}

// Touch resets the idle time of entries a consumer is still working on
// (XCLAIM ... JUSTID), so that no other consumer reclaims them.
func (db *DB) Touch(ctx context.Context, stream, group, consumer string, ids []string) error {
	return db.c.Do(ctx, db.c.B().Xclaim().Key(stream).Group(group).Consumer(consumer).MinIdleTime("0").
		Id(ids...).Justid().Build()).Error()
}

// Range reads entries of stream between start and end (inclusive; "-" and "+"
// for the ends), at most count.
func (db *DB) Range(ctx context.Context, stream, start, end string, count int64) ([]Entry, error) {
	return parseEntries(stream, db.c.Do(ctx, db.c.B().Xrange().Key(stream).Start(start).End(end).Count(count).Build()))
}

// RevRange reads entries of stream from end down to start, at most count.
func (db *DB) RevRange(ctx context.Context, stream, end, start string, count int64) ([]Entry, error) {
	return parseEntries(stream, db.c.Do(ctx, db.c.B().Xrevrange().Key(stream).End(end).Start(start).Count(count).Build()))
}

// Redrive moves one dead letter to the group's retry stream.
func (db *DB) Redrive(ctx context.Context, pk PartKeys, group, id string) (bool, error) {
	n, err := scriptRedrive.Exec(ctx, db.c, []string{pk.DLQ, pk.Retry(group)}, []string{id}).AsInt64()
	return n == 1, err
}

// Delete removes entries from a stream.
func (db *DB) Delete(ctx context.Context, stream string, ids ...string) (int64, error) {
	return db.c.Do(ctx, db.c.B().Xdel().Key(stream).Id(ids...).Build()).AsInt64()
}

// Release hands entries back unhandled: their idle time is set past the
// visibility timeout, so that any consumer's next reclaim takes them.
func (db *DB) Release(ctx context.Context, stream, group, consumer string, ids []string, visibilityMS int64) error {
	return db.c.Do(ctx, db.c.B().Xclaim().Key(stream).Group(group).Consumer(consumer).MinIdleTime("0").
		Id(ids...).Idle(visibilityMS+1).Justid().Build()).Error()
}

// PendingOf lists the ids pending for one consumer of group on stream.
func (db *DB) PendingOf(ctx context.Context, stream, group, consumer string, count int64) ([]string, error) {
	arr, err := db.c.Do(ctx, db.c.B().Xpending().Key(stream).Group(group).Start("-").End("+").Count(count).Consumer(consumer).Build()).ToArray()
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(arr))
	for _, e := range arr {
		f, err := e.ToArray()
		if err != nil || len(f) == 0 {
			continue
		}
		if id, err := f[0].ToString(); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// ForgetIdleConsumers deletes the consumers of group on stream that have no
// pending entries and have been idle for at least minIdleMS (never keep,
// the caller itself), with consumer_forget.lua. It returns how many.
func (db *DB) ForgetIdleConsumers(ctx context.Context, stream, group, keep string, minIdleMS int64) (int, error) {
	arr, err := db.c.Do(ctx, db.c.B().XinfoConsumers().Key(stream).Group(group).Build()).ToArray()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range arr {
		m, err := c.AsMap()
		if err != nil {
			continue
		}
		nameMsg, pendMsg, idleMsg := m["name"], m["pending"], m["idle"]
		name, _ := nameMsg.ToString()
		pending, err1 := pendMsg.AsInt64()
		idle, err2 := idleMsg.AsInt64()
		if name == "" || name == keep || err1 != nil || err2 != nil || pending > 0 || idle < minIdleMS {
			continue
		}
		// The script re-checks that nothing is pending and deletes atomically.
		if d, err := scriptForget.Exec(ctx, db.c, []string{stream}, []string{group, name}).AsInt64(); err == nil && d == 1 {
			n++
		}
	}
	return n, nil
}

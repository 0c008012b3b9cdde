package rdb

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

var (
	scriptScheduleAdd    = mustScript("schedule_add")
	_                    = mustScript("schedule_move") // registered for evalMulti by name
	scriptScheduleList   = mustScript("schedule_list")
	scriptScheduleCancel = mustScript("schedule_cancel")
)

// Delayed is one event waiting in a partition's delay schedule.
type Delayed struct {
	ID    string   // the event id (the schedule's member)
	DueMS int64    // due time, unix ms
	Pairs []string // the stream entry's field/value pairs
}

// ScheduleAdd schedules events on one partition (schedule_add.lua); per
// event it reports whether it was added (false: the id was already
// scheduled).
func (db *DB) ScheduleAdd(ctx context.Context, pk PartKeys, ids []string, dueMS []int64, fields [][]string) ([]bool, error) {
	n := 1
	for _, f := range fields {
		n += 3 + len(f)
	}
	args := make([]string, 0, n)
	args = append(args, strconv.Itoa(len(ids)))
	for i, f := range fields {
		args = append(args, ids[i], strconv.FormatInt(dueMS[i], 10), strconv.Itoa(len(f)))
		args = append(args, f...)
	}
	arr, err := scriptScheduleAdd.Exec(ctx, db.c, []string{pk.Delay(), pk.DelayData()}, args).ToArray()
	if err != nil {
		return nil, err
	}
	if len(arr) != len(ids) {
		return nil, fmt.Errorf("schedule_add: %d replies for %d events", len(arr), len(ids))
	}
	out := make([]bool, len(ids))
	for i := range arr {
		v, err := arr[i].AsInt64()
		if err != nil {
			return nil, err
		}
		out[i] = v == 1
	}
	return out, nil
}

// MoveResult is what schedule_move.lua answered for one partition.
type MoveResult struct {
	Moved     int64
	NextDueMS int64 // -1: nothing left
	NowMS     int64 // the server's time when it answered (NextDueMS is on its clock)
	Err       error
}

// MoveDue moves the due delayed events of every given partition to its
// stream (schedule_move.lua, pipelined: one round trip per node), then
// trims each stream that took events by MAXLEN ~ maxLen (0: none) and
// MINID ~ minID ("": none), as a publish would.
// Due is judged by the Redis server's clock.
func (db *DB) MoveDue(ctx context.Context, parts []PartKeys, limit, maxLen int64, minID string) []MoveResult {
	execs := make([]rueidis.LuaExec, len(parts))
	args := []string{strconv.FormatInt(limit, 10), strconv.FormatInt(maxLen, 10), minID}
	for i, pk := range parts {
		execs[i] = rueidis.LuaExec{Keys: []string{pk.Delay(), pk.DelayData(), pk.Stream}, Args: args}
	}
	out := make([]MoveResult, len(parts))
	for i, r := range db.evalMulti(ctx, "schedule_move", execs) {
		arr, err := r.ToArray()
		if err == nil && len(arr) != 3 {
			err = fmt.Errorf("schedule_move: %d replies, want 3", len(arr))
		}
		if err != nil {
			out[i] = MoveResult{NextDueMS: -1, Err: err}
			continue
		}
		out[i].Moved, _ = arr[0].AsInt64()
		out[i].NextDueMS, _ = arr[1].AsInt64()
		out[i].NowMS, _ = arr[2].AsInt64()
	}
	return out
}

// ScheduleList lists delayed events of one partition in due order, from
// offset; with id set, only that event (none when it is not scheduled).
// total is the number of events scheduled on the partition.
func (db *DB) ScheduleList(ctx context.Context, pk PartKeys, offset, count int64, id string) (total int64, out []Delayed, err error) {
	arr, err := scriptScheduleList.Exec(ctx, db.c, []string{pk.Delay(), pk.DelayData()},
		[]string{strconv.FormatInt(offset, 10), strconv.FormatInt(count, 10), id}).ToArray()
	if err != nil {
		return 0, nil, err
	}
	if len(arr) < 1 || (len(arr)-1)%3 != 0 {
		return 0, nil, fmt.Errorf("schedule_list: unexpected reply of %d elements", len(arr))
	}
	if total, err = arr[0].AsInt64(); err != nil {
		return 0, nil, err
	}
	for i := 1; i < len(arr); i += 3 {
		var d Delayed
		if d.ID, err = arr[i].ToString(); err != nil {
			return 0, nil, err
		}
		s, err := arr[i+1].ToString()
		if err != nil {
			return 0, nil, err
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, nil, fmt.Errorf("schedule_list: score %q: %w", s, err)
		}
		d.DueMS = int64(f)
		if d.Pairs, err = arr[i+2].AsStrSlice(); err != nil {
			return 0, nil, err
		}
		out = append(out, d)
	}
	return total, out, nil
}

// ScheduleCancel removes a delayed event that has not been moved yet; it
// reports whether one was removed.
func (db *DB) ScheduleCancel(ctx context.Context, pk PartKeys, id string) (bool, error) {
	n, err := scriptScheduleCancel.Exec(ctx, db.c, []string{pk.Delay(), pk.DelayData()}, []string{id}).AsInt64()
	return n == 1, err
}

// ScheduleCount is the number of delayed events waiting on each partition.
func (db *DB) ScheduleCount(ctx context.Context, parts []PartKeys) ([]int64, error) {
	cmds := make(rueidis.Commands, len(parts))
	for i, pk := range parts {
		cmds[i] = db.c.B().Zcard().Key(pk.Delay()).Build()
	}
	out := make([]int64, len(parts))
	for i, r := range db.c.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// evalMulti pipelines EVALSHA of the named script, one per exec, and sends
// the source (EVAL) again for those answered NOSCRIPT (the script cache is
// per node and lost on restart and failover). Unlike rueidis's ExecMulti it
// does not load the script on every node first, so a poll costs one round.
func (db *DB) evalMulti(ctx context.Context, name string, execs []rueidis.LuaExec) []rueidis.RedisResult {
	cmds := make(rueidis.Commands, len(execs))
	for i, e := range execs {
		cmds[i] = db.c.B().Evalsha().Sha1(scriptSHA[name]).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
	}
	rs := db.c.DoMulti(ctx, cmds...)
	var again rueidis.Commands
	var at []int
	for i, r := range rs {
		if replyPrefix(r.Error(), "NOSCRIPT") {
			e := execs[i]
			again = append(again, db.c.B().Eval().Script(scriptSrc[name]).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build())
			at = append(at, i)
		}
	}
	if len(again) > 0 {
		for j, r := range db.c.DoMulti(ctx, again...) {
			rs[at[j]] = r
		}
	}
	return rs
}

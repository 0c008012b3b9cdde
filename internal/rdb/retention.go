package rdb

import (
	"context"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

var _ = mustScript("retention_trim") // registered for evalMulti by name

// RetentionResult is what retention_trim.lua did on one partition.
type RetentionResult struct {
	Trimmed int64
	Err     error
}

// Retain runs retention_trim.lua on every given partition (pipelined):
// with trimAcked, it trims what every group has acknowledged; always, it
// counts per group what hard caps took before the group handled it.
func (db *DB) Retain(ctx context.Context, parts []PartKeys, trimAcked bool) []RetentionResult {
	flag := "0"
	if trimAcked {
		flag = "1"
	}
	execs := make([]rueidis.LuaExec, len(parts))
	for i, pk := range parts {
		execs[i] = rueidis.LuaExec{Keys: []string{pk.Stream, pk.Losses()}, Args: []string{flag}}
	}
	out := make([]RetentionResult, len(parts))
	for i, r := range db.evalMulti(ctx, "retention_trim", execs) {
		arr, err := r.ToArray()
		if err == nil && len(arr) > 0 {
			out[i].Trimmed, err = arr[0].AsInt64()
		}
		out[i].Err = err
	}
	return out
}

// GroupLoss is what hard retention caps took from one group on a partition.
type GroupLoss struct {
	Pending int64 // delivered, not acknowledged, payload trimmed
	Unread  int64 // trimmed before the group read them
}

// Losses reads the loss counters of a partition's groups.
func (db *DB) Losses(ctx context.Context, pk PartKeys) (map[string]GroupLoss, error) {
	m, err := db.c.Do(ctx, db.c.B().Hgetall().Key(pk.Losses()).Build()).AsStrMap()
	if err != nil {
		return nil, err
	}
	out := map[string]GroupLoss{}
	for k, v := range m {
		kind, group, ok := strings.Cut(k, ":")
		if !ok || (kind != "p" && kind != "u") {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		l := out[group]
		if kind == "p" {
			l.Pending = n
		} else {
			l.Unread = n
		}
		out[group] = l
	}
	return out, nil
}

// DeadLetterCounts counts a partition's dead letters per group, reading at
// most limit entries of the dead-letter stream (the newest first); it
// reports whether it read them all.
func (db *DB) DeadLetterCounts(ctx context.Context, pk PartKeys, groupField string, limit int64) (map[string]int64, bool, error) {
	out := map[string]int64{}
	end := "+"
	var read int64
	for read < limit {
		n := min(1000, limit-read)
		es, err := db.RevRange(ctx, pk.DLQ, end, "-", n)
		if err != nil {
			return nil, false, err
		}
		for _, e := range es {
			for i := 0; i+1 < len(e.Pairs); i += 2 {
				if e.Pairs[i] == groupField {
					out[e.Pairs[i+1]]++
					break
				}
			}
		}
		read += int64(len(es))
		if int64(len(es)) < n {
			return out, true, nil
		}
		end = "(" + es[len(es)-1].ID
	}
	return out, false, nil
}

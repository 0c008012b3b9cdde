package rdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// AtomicPart is one partition's share of an atomic batch.
type AtomicPart struct {
	Keys      PartKeys
	DedupeIDs []string
	Fields    [][]string
}

// AppendAtomic runs stream_append_atomic.lua: every event of every partition
// or none. batchID makes a re-sent batch answer with its first positions.
func (db *DB) AppendAtomic(ctx context.Context, batchID string, parts []AtomicPart, maxLen int64, minID string, dedupeMS, stateTTL, replicas, timeoutMS int64) (AppendResult, error) {
	keys := make([]string, 0, 2*len(parts))
	args := []string{strconv.FormatInt(maxLen, 10), minID, strconv.FormatInt(dedupeMS, 10), strconv.FormatInt(stateTTL, 10), strconv.Itoa(len(parts))}
	total := 0
	for _, p := range parts {
		keys = append(keys, p.Keys.Stream, p.Keys.Producer(batchID))
		args = append(args, p.Keys.DedupePrefix(), strconv.Itoa(len(p.Fields)))
		for i, f := range p.Fields {
			args = append(args, p.DedupeIDs[i], strconv.Itoa(len(f)))
			args = append(args, f...)
		}
		total += len(p.Fields)
	}
	var arr []string
	var err error
	acked := int64(-1)
	if replicas > 0 {
		// The script and WAIT on one connection: WAIT counts the replicas
		// that have that connection's writes.
		err = db.c.Dedicated(func(dc rueidis.DedicatedClient) error {
			run := dc.B().Evalsha().Sha1(scriptSHA["stream_append_atomic"]).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
			rs := dc.DoMulti(ctx, run, dc.B().Wait().Numreplicas(replicas).Timeout(timeoutMS).Build())
			if replyPrefix(rs[0].Error(), "NOSCRIPT") { // script cache lost (restart, failover): send the source
				run = dc.B().Eval().Script(scriptSrc["stream_append_atomic"]).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
				rs = dc.DoMulti(ctx, run, dc.B().Wait().Numreplicas(replicas).Timeout(timeoutMS).Build())
			}
			var err error
			if arr, err = rs[0].AsStrSlice(); err != nil {
				return err
			}
			if acked, err = rs[1].AsInt64(); err != nil {
				return fmt.Errorf("WAIT after the append (the events are stored): %w", err)
			}
			return nil
		})
	} else {
		arr, err = scriptAppendAtomic.Exec(ctx, db.c, keys, args).AsStrSlice()
	}
	if err != nil {
		return AppendResult{}, err
	}
	if len(arr) != total+1 {
		return AppendResult{}, fmt.Errorf("stream_append_atomic: %d replies for %d events", len(arr)-1, total)
	}
	res := AppendResult{Replay: arr[0] == "replay", Positions: make([]string, total), Dup: make([]bool, total), Acked: acked}
	for i, p := range arr[1:] {
		if strings.HasPrefix(p, "=") {
			p, res.Dup[i] = p[1:], true
		}
		res.Positions[i] = p
	}
	return res, nil
}

// ErrVersionConflict is returned by the entity appends when the stream is
// not at the expected version.
var ErrVersionConflict = errors.New("version conflict")

// EntityAppend appends events to an entity stream at the expected version
// with entity_append.lua (one round trip). It returns the new version, or
// the current version and ErrVersionConflict.
func (db *DB) EntityAppend(ctx context.Context, key string, expected int64, fields [][]string) (int64, error) {
	args := []string{strconv.FormatInt(expected, 10), strconv.Itoa(len(fields))}
	for _, f := range fields {
		args = append(args, strconv.Itoa(len(f)))
		args = append(args, f...)
	}
	arr, err := scriptEntityAppend.Exec(ctx, db.c, []string{key}, args).AsIntSlice()
	if err != nil {
		return 0, err
	}
	if len(arr) != 2 {
		return 0, errors.New("entity_append: unexpected reply")
	}
	if arr[0] == 0 {
		return arr[1], ErrVersionConflict
	}
	return arr[1], nil
}

// EntityAppendWatch does the same with WATCH / MULTI / EXEC on a dedicated
// connection (three round trips). Kept for the benchmark that chose the script.
func (db *DB) EntityAppendWatch(ctx context.Context, key string, expected int64, fields [][]string) (int64, error) {
	var version int64
	err := db.c.Dedicated(func(dc rueidis.DedicatedClient) error {
		if err := dc.Do(ctx, dc.B().Watch().Key(key).Build()).Error(); err != nil {
			return err
		}
		es, err := parseEntries(key, dc.Do(ctx, dc.B().Xrevrange().Key(key).End("+").Start("-").Count(1).Build()))
		if err != nil {
			return err
		}
		version = 0
		if len(es) > 0 {
			version = VersionOf(es[0].ID)
		}
		if version != expected {
			dc.Do(ctx, dc.B().Unwatch().Build())
			return ErrVersionConflict
		}
		cmds := make(rueidis.Commands, 0, len(fields)+2)
		cmds = append(cmds, dc.B().Multi().Build())
		for i, f := range fields {
			b := dc.B().Xadd().Key(key).Id("0-" + strconv.FormatInt(expected+int64(i)+1, 10)).FieldValue()
			for j := 0; j+1 < len(f); j += 2 {
				b = b.FieldValue(f[j], f[j+1])
			}
			cmds = append(cmds, b.Build())
		}
		cmds = append(cmds, dc.B().Exec().Build())
		rs := dc.DoMulti(ctx, cmds...)
		exec := rs[len(rs)-1]
		if rueidis.IsRedisNil(exec.Error()) {
			return ErrVersionConflict // someone wrote between WATCH and EXEC
		}
		if err := exec.Error(); err != nil {
			return err
		}
		version = expected + int64(len(fields))
		return nil
	})
	return version, err
}

// VersionOf is the version encoded in an entity stream id "0-<version>".
func VersionOf(id string) int64 {
	_, seq, _ := strings.Cut(id, "-")
	v, _ := strconv.ParseInt(seq, 10, 64)
	return v
}

package rdb

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Raw baselines for `herald bench`: the plainest commands that do the same
// job as a Herald operation, sent through the same client library, so that a
// benchmark can print Herald's figure beside what Redis and rueidis allow.
// Raw entries carry one field, "d", holding the payload.

// RawField is the only field of a raw baseline stream entry.
const RawField = "d"

// RawStream is the key of raw baseline partition p of run; the partition is
// the hash tag, as Herald's own partition keys do, so each stream has a slot.
func (k Keys) RawStream(run string, p int) string {
	return k.NS + ":bench:{" + run + "/" + strconv.Itoa(p) + "}"
}

// RawChannel is the channel of a raw baseline Pub/Sub run.
func (k Keys) RawChannel(run string) string { return k.NS + ":bench:" + run }

// RawXAddBatch appends n entries holding data to stream in one pipelined
// round trip (DoMulti of n XADDs).
func (db *DB) RawXAddBatch(ctx context.Context, stream string, data []byte, n int) error {
	cmds := make(rueidis.Commands, n)
	for i := range cmds {
		cmds[i] = db.c.B().Xadd().Key(stream).Id("*").FieldValue().FieldValue(RawField, rueidis.BinaryString(data)).Build()
	}
	for _, r := range db.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// RawXAdd appends one entry holding data to stream.
func (db *DB) RawXAdd(ctx context.Context, stream string, data []byte) error {
	return db.c.Do(ctx, db.c.B().Xadd().Key(stream).Id("*").FieldValue().FieldValue(RawField, rueidis.BinaryString(data)).Build()).Error()
}

// RawCreateGroup creates group on stream (and the stream when missing),
// reading from start ("0" or "$"). An existing group is left as it is.
func (db *DB) RawCreateGroup(ctx context.Context, stream, group, start string) error {
	err := db.c.Do(ctx, db.c.B().XgroupCreate().Key(stream).Group(group).Id(start).Mkstream().Build()).Error()
	if IsBusyGroup(err) {
		return nil
	}
	return err
}

// RawReadAck reads up to count new entries of stream for consumer
// (XREADGROUP, blocking up to blockMS), calls each with every entry's payload
// when each is not nil, then acknowledges the batch with one XACK. It returns
// the number of entries read and acknowledged (0 when the block timed out).
func (db *DB) RawReadAck(ctx context.Context, stream, group, consumer string, count, blockMS int64, each func(data []byte)) (int, error) {
	res, err := db.c.Do(ctx, db.c.B().Xreadgroup().Group(group, consumer).Count(count).Block(blockMS).
		Streams().Key(stream).Id(">").Build()).AsXRead()
	if err != nil {
		if rueidis.IsRedisNil(err) {
			return 0, nil
		}
		return 0, err
	}
	es := res[stream]
	if len(es) == 0 {
		return 0, nil
	}
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
		if each != nil {
			each([]byte(e.FieldValues[RawField]))
		}
	}
	if err := db.c.Do(ctx, db.c.B().Xack().Key(stream).Group(group).Id(ids...).Build()).Error(); err != nil {
		return 0, err
	}
	return len(es), nil
}

// RawPublish sends PUBLISH and returns the number of receivers.
func (db *DB) RawPublish(ctx context.Context, channel string, data []byte) (int64, error) {
	return db.c.Do(ctx, db.c.B().Publish().Channel(channel).Message(rueidis.BinaryString(data)).Build()).AsInt64()
}

// RawSubscribe subscribes a dedicated connection to channel and calls fn
// with each message's payload, from the connection's reading goroutine. It
// returns once the subscription is confirmed; call stop to close it.
func (db *DB) RawSubscribe(ctx context.Context, channel string, fn func(data []byte)) (stop func(), err error) {
	dc, cancel := db.c.Dedicate()
	dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: func(m rueidis.PubSubMessage) { fn([]byte(m.Message)) }})
	if err := dc.Do(ctx, dc.B().Subscribe().Channel(channel).Build()).Error(); err != nil {
		cancel()
		return nil, err
	}
	return cancel, nil
}

// RawDelete removes keys, one UNLINK each (they may live in different slots).
func (db *DB) RawDelete(ctx context.Context, keys ...string) error {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = db.c.B().Unlink().Key(k).Build()
	}
	for _, r := range db.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// ServerInfo is what a benchmark reports about the Redis server.
type ServerInfo struct {
	Version string        // redis_version
	Mode    string        // redis_mode: standalone, cluster, sentinel
	CPU     time.Duration // used_cpu_user + used_cpu_sys, summed over every node
	Nodes   int
}

// ServerInfo reads the version and the CPU time used so far by the server
// (every node of a cluster, summed) with INFO server and INFO cpu.
func (db *DB) ServerInfo(ctx context.Context) (ServerInfo, error) {
	var out ServerInfo
	for _, n := range db.nodes() {
		rs := n.DoMulti(ctx, n.B().Info().Section("server").Build(), n.B().Info().Section("cpu").Build())
		var text strings.Builder
		for _, r := range rs {
			s, err := r.ToString()
			if err != nil {
				return out, err
			}
			text.WriteString(s)
			text.WriteString("\n")
		}
		for _, line := range strings.Split(text.String(), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			switch k {
			case "redis_version":
				out.Version = v
			case "redis_mode":
				out.Mode = v
			case "used_cpu_user", "used_cpu_sys":
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					out.CPU += time.Duration(f * float64(time.Second))
				}
			}
		}
		out.Nodes++
	}
	return out, nil
}

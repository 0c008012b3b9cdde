package rdb

import (
	"context"
	"time"

	"github.com/redis/rueidis"
)

// A partition owner's reads: the delivery engine's batch read (with its
// acks and its check for a former owner's strays), the reader's own
// connection, and the claim of those strays.

// ReadBatch reads new entries like ReadGroup, for the delivery engine. On
// the reader's own RESP connection each entry's strings are one allocation
// and the entries' field slices share one backing array per stream (through
// a given client's dedicated connection, parsed as ReadGroup parses).
//
// acks, when not empty, go first in the same round trip (Redis runs them
// before the read blocks); ackErr is their first error (the caller sends
// them again another way: they can be repeated).
//
// With checkOthers (ordered delivery, where the caller owns the partition),
// an XPENDING summary of the partition's stream follows the read in the
// same round trip, and others reports whether any consumer but this one
// has entries pending there: strays of a former owner's read that ran after
// its lease (see Strays). The group's retry stream is checked the same way,
// in a round trip of its own, only when the read returned entries of it
// (order holds per stream, and an ordered group retries in place, so its
// reads rarely do): each summary costs the read about 5 µs of
// publish-to-handler latency at p50 on 2 cores (docs/design.md).
//
// The round trip goes on the reader's own connection rc and does not
// watch ctx: closing rc is what interrupts it (ctx bounds only the retry
// stream's check).
func (db *DB) ReadBatch(ctx context.Context, rc *ReadConn, pk PartKeys, group, consumer string, count, blockMS int64, checkOthers bool, acks Acks) (es []Entry, others bool, ackErr, err error) {
	if db.dialsOwn() {
		es, others, ackErr, err = db.readRaw(ctx, rc, pk, group, consumer, count, blockMS, checkOthers, acks)
	} else {
		es, others, ackErr, err = db.readDedicated(ctx, rc, pk, group, consumer, count, blockMS, checkOthers, acks)
	}
	if err != nil || !checkOthers || others {
		return es, others, ackErr, err
	}
	retry := pk.Retry(group)
	for i := range es {
		if es[i].Stream == retry {
			if arr, err := db.c.Do(ctx, db.c.B().Xpending().Key(retry).Group(group).Build()).ToArray(); err == nil {
				others = othersPending(arr, consumer)
			}
			break
		}
	}
	return es, others, ackErr, nil
}

// readDedicated is ReadBatch's round trip on a dedicated connection of the
// client (when Herald was given a client, not a URL).
func (db *DB) readDedicated(ctx context.Context, rc *ReadConn, pk PartKeys, group, consumer string, count, blockMS int64, checkOthers bool, acks Acks) (es []Entry, others bool, ackErr, err error) {
	dc, err := rc.dedicated(ctx)
	if err != nil {
		return nil, false, nil, err
	}
	cmd := db.c.B().Xreadgroup().Group(group, consumer).Count(count).Block(blockMS).
		Streams().Key(pk.Stream, pk.Retry(group)).Id(">", ">").Build()
	// All on the reader's connection, in this order: the acks run before
	// the read blocks and the summary right after it is served.
	cmds := acks.commands(db, pk, group, make(rueidis.Commands, 0, 8))
	na := len(cmds)
	cmds = append(cmds, cmd)
	if checkOthers {
		cmds = append(cmds, db.c.B().Xpending().Key(pk.Stream).Group(group).Build())
	}
	// A deadline and no cancellation: rueidis then runs the round trip on
	// this goroutine. The deadline bounds a silent server.
	dctx, cancel := context.WithTimeout(context.Background(), time.Duration(blockMS)*time.Millisecond+ConnWriteTimeout)
	rs := dc.DoMulti(dctx, cmds...)
	cancel()
	for _, r := range rs[:na] {
		if e := r.Error(); e != nil && ackErr == nil {
			ackErr = e
		}
	}
	for _, r := range rs[na+1:] {
		arr, err := r.ToArray()
		if err != nil {
			continue // the read's own result decides; strays are checked again next read
		}
		others = others || othersPending(arr, consumer)
	}
	es, err = parseXRead(rs[na])
	return es, others, ackErr, err
}

// othersPending reports whether an XPENDING summary shows entries pending
// for a consumer other than consumer.
func othersPending(summary []rueidis.RedisMessage, consumer string) bool {
	for name := range pendingByConsumer(summary) {
		if name != consumer {
			return true
		}
	}
	return false
}

// Strays claims for consumer the entries of group pending under any other
// consumer at or after start on each stream of the partition (start[0] for
// the partition stream, start[1] for the retry stream) and returns them, in
// stream order per stream. An owner calls it when ReadBatch reports others:
// the former owner's read ran after its lease and took entries the owner
// has not seen, which must be handled before the later ones it read.
// Entries pending before start are the owner's own (handed over already,
// perhaps taken by a late claim of another consumer) and are left alone.
func (db *DB) Strays(ctx context.Context, pk PartKeys, group, consumer string, start [2]string) ([]Entry, error) {
	var out []Entry
	for i, stream := range [2]string{pk.Stream, pk.Retry(group)} {
		pc, err := db.PendingConsumers(ctx, stream, group)
		if err != nil {
			return nil, err
		}
		var ids []string
		for name, n := range pc {
			if name == consumer || n <= 0 {
				continue
			}
			arr, err := db.c.Do(ctx, db.c.B().Xpending().Key(stream).Group(group).Start(start[i]).End("+").Count(n).Consumer(name).Build()).ToArray()
			if err != nil {
				return nil, err
			}
			for _, e := range arr {
				if f, err := e.ToArray(); err == nil && len(f) > 0 {
					if id, err := f[0].ToString(); err == nil {
						ids = append(ids, id)
					}
				}
			}
		}
		if len(ids) == 0 {
			continue
		}
		// XCLAIM drops deleted entries from the pending list and does not
		// return them (older servers answer nil in their place).
		arr, err := db.c.Do(ctx, db.c.B().Xclaim().Key(stream).Group(group).Consumer(consumer).MinIdleTime("0").Id(ids...).Build()).ToArray()
		if err != nil {
			return nil, err
		}
		for _, e := range arr {
			if e.IsNil() {
				continue
			}
			en, err := parseEntry(stream, e)
			if err != nil {
				return nil, err
			}
			out = append(out, en)
		}
	}
	return out, nil
}

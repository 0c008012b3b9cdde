package rdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The plain append on the lane's own connection (seventh pass).
//
// Where Herald dials Redis itself (a URL, not a client given), a lane's
// plain appends go out on a connection of its own on which Herald speaks
// RESP, as a partition reader does (ReadConn): the XADDs written straight
// into one buffer, the positions read into one string. Through rueidis,
// building the commands and writing them (its length prefixes take a
// logarithm each) was about 30% of PublishAsync's client CPU on 2 cores,
// and PublishAsync's client spent 1.1-1.4 µs per event against raw
// pipelined XADD's 0.6 (docs/design.md, "The plain append on the lane's
// own connection").
//
// Everything else stays where it was: the identity of this connection
// (CLIENT INFO, with the CLIENT KILL probe) is learnt on it before the
// first append, and a lost append makes it the suspect exactly as before;
// the fence (the kill of the suspect and the scan of the tail) and the
// script and transaction ways run on the lane's rueidis connection
// (Fence.dc), taken only when one of them is needed. A batch is sent only
// after the reply of everything the lane sent before it, on whichever
// connection, so that the two connections cannot reorder a lane.

// ownConn is the lane's own connection, dialed when first needed.
func (f *Fence) ownConn(db *DB, key string) *ReadConn {
	if f.own == nil {
		f.own = &ReadConn{db: db, key: key, lane: true}
	}
	return f.own
}

// closeOwn closes the lane's own connection; its identity goes with it.
func (f *Fence) closeOwn() {
	if f.own != nil {
		f.own.Close()
		f.own = nil
	}
	f.conn = connID{}
}

// identifyOwn dials the lane's own connection when it has none and learns
// its identity on the server (CLIENT INFO) and whether this user may kill
// a connection (the probe), in one round trip.
func (db *DB) identifyOwn(ctx context.Context, f *Fence, key string) error {
	oc := f.ownConn(db, key)
	if oc.conn != nil && f.conn.id != 0 {
		return nil
	}
	f.conn = connID{}
	if oc.conn == nil {
		if err := oc.connect(ctx); err != nil {
			f.closeOwn()
			return err
		}
	}
	w := appendArgs(oc.w[:0], "CLIENT", "INFO")
	w = appendArgs(w, "CLIENT", "KILL", "ID", probeClientID, "ADDR", "0.0.0.0:0")
	oc.w = w
	_ = oc.conn.SetDeadline(deadlineOf(ctx, ConnWriteTimeout))
	if _, err := oc.conn.Write(w); err != nil {
		f.closeOwn()
		return err
	}
	info, ierr := oc.rr.value(0)
	kerr := error(nil)
	if ierr == nil || isReply(ierr) {
		kerr = oc.rr.skip()
	}
	for _, e := range []error{ierr, kerr} {
		if e != nil && isReply(e) && !Transient(e) {
			// An error reply: this server cannot name or kill a connection.
			f.closeOwn()
			db.noPlain.Store(true)
			return fmt.Errorf("%w: %v", ErrPlainUnsupported, e)
		}
	}
	if err := errors.Join(ierr, kerr); err != nil {
		f.closeOwn()
		return err
	}
	s, _ := info.(string)
	id, err := parseClientInfo(s)
	if err != nil {
		f.closeOwn()
		return err
	}
	f.conn = id
	return nil
}

// isReply reports an error reply (the command ran, or was refused, and
// the connection is in step), as against a lost connection or a timeout.
func isReply(err error) bool {
	_, ok := errors.AsType[*ReplyError](err) // no allocation, unlike errors.As
	return ok
}

// deadlineOf is ctx's deadline, or now + d when it has none.
func deadlineOf(ctx context.Context, d time.Duration) time.Time {
	if t, ok := ctx.Deadline(); ok {
		return t
	}
	return time.Now().Add(d)
}

// appendPlainOwn is AppendPlain on the lane's own connection.
func (db *DB) appendPlainOwn(ctx context.Context, f *Fence, b *AppendBatch, replicas, timeoutMS int64) (res AppendResult, err error) {
	if err := db.identifyOwn(ctx, f, b.Keys.Stream); err != nil {
		return res, err
	}
	// The fence runs on the lane's rueidis connection; its replies come
	// before anything of this attempt is written.
	res, send, err := db.recoverLost(ctx, f, b)
	if err != nil {
		return res, err
	}
	oc := f.own
	key := b.Keys.Stream
	maxLen := ""
	if b.MaxLen > 0 {
		maxLen = strconv.FormatInt(b.MaxLen, 10)
	}
	n := send.count(len(b.Fields))
	w, extra := oc.w[:0], 0
	for j := range n {
		fv := b.Fields[send.at(j)]
		if maxLen != "" {
			w = appendStrs(appendCmd(w, 6+len(fv)), "XADD", key, "MAXLEN", "~", maxLen, "*")
		} else {
			w = appendStrs(appendCmd(w, 3+len(fv)), "XADD", key, "*")
		}
		w = appendStrs(w, fv...)
	}
	if b.MinID != "" {
		w, extra = appendArgs(w, "XTRIM", key, "MINID", "~", b.MinID), extra+1
	}
	if n == 0 && replicas > 0 {
		// Everything had landed: WAIT counts the writes of its own
		// connection, so write the lane's state (as a transactional append
		// does) for WAIT to cover the events before it.
		w, extra = appendArgs(w, "SET", b.Keys.Producer(b.Producer), strconv.FormatInt(b.Seq, 10)+"|*",
			"PX", strconv.FormatInt(b.StateTTL, 10)), extra+1
	}
	if replicas > 0 {
		w = appendArgs(w, "WAIT", strconv.FormatInt(replicas, 10), strconv.FormatInt(timeoutMS, 10))
	}
	oc.w = w
	if len(w) == 0 {
		f.stored(b, res.Positions, time.Now())
		return res, nil
	}
	wait := ConnWriteTimeout
	if replicas > 0 {
		wait += time.Duration(timeoutMS) * time.Millisecond
	}
	conn := oc.conn
	_ = conn.SetDeadline(deadlineOf(ctx, wait))
	if cap(oc.w) > laneBuffer {
		oc.w = nil // a big batch's buffer is not kept for the small ones after it
	}
	if ctx.Done() != nil {
		// A cancelled publish ends the wait for the reply, as it would
		// through rueidis: the outcome is then unknown. A cancellation
		// that came as the replies were read may still set that deadline:
		// the connection is not kept then.
		stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() {
				f.closeOwn()
			}
		}()
	}
	lost := func(err error) (AppendResult, error) {
		// The outcome of what was written is unknown from here on.
		f.lostAttempt(b.Seq)
		f.closeOwn()
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, err
	}
	if _, err := conn.Write(w); err != nil {
		return lost(err)
	}
	// The XADDs' replies: every position into one buffer, one string. An
	// error reply that is not transient (the command ran and failed, for
	// example WRONGTYPE or OOM) ends the batch with that error once every
	// reply was read, as through rueidis: the connection stays in step.
	buf := make([]byte, 0, n*16)
	ends := make([]int, n)
	var refused error
	for i := range n {
		t, size, err := oc.rr.header()
		switch {
		case isReply(err):
			if Transient(err) {
				if a := movedAddr(movedTo(err), conn); a != "" {
					db.moved.Store(KeySlot(key), a)
				}
				return lost(err) // refused here, but the XADDs after it may have run
			}
			if refused == nil {
				refused = err
			}
			ends[i] = len(buf)
			continue
		case err != nil:
			return lost(err)
		case t != '$' || size < 0:
			return lost(errProto)
		}
		if buf, err = oc.rr.body(buf, size); err != nil {
			return lost(err)
		}
		ends[i] = len(buf)
	}
	for range extra {
		if err := oc.rr.skip(); err != nil && !isReply(err) {
			return lost(err)
		}
	}
	var acked any
	var waitErr error
	if replicas > 0 {
		if acked, waitErr = oc.rr.value(0); waitErr != nil && !isReply(waitErr) {
			// The events are stored, but a retry cannot know that from
			// this reply: fence and scan as after a lost XADD, so that it
			// finds them instead of sending them again.
			_, err := lost(waitErr)
			return res, fmt.Errorf("WAIT after the append (the events are stored): %w", err)
		}
	}
	fillPositions(res.Positions, send, buf, ends)
	switch {
	case refused != nil:
		return res, refused
	case waitErr != nil:
		return res, fmt.Errorf("WAIT after the append (the events are stored): %w", waitErr)
	}
	if replicas > 0 {
		res.Acked, _ = acked.(int64)
	}
	f.stored(b, res.Positions, time.Now())
	return res, nil
}

// fillPositions cuts the positions read into buf (the j-th ending at
// ends[j]) out of one string, into dst at the batch indices of send.
func fillPositions(dst []string, send toSend, buf []byte, ends []int) {
	s, start := string(buf), 0
	for j, e := range ends {
		dst[send.at(j)], start = s[start:e], e
	}
}

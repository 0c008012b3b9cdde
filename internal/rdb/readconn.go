package rdb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// ReadConn is one partition reader's own connection, on which Herald speaks
// RESP2 itself (resp.go).
//
// Why a connection of its own: a blocking read sent through the shared
// client goes out on a pooled connection through that connection's writer
// and reader goroutines (it has to watch the caller's context), two
// goroutine wake-ups per read. Measured on 2 cores at 20,000 events/s: the
// reader got its events 48-75 µs later than raw XREADGROUP readers did at
// p50, and 20-28 µs later on a connection of its own.
//
// Why RESP of its own: rueidis parses each string of a reply into a message
// of its own; reading an entry's strings into one allocation halves the
// client's CPU per event read (docs/design.md).
//
// When the DB was given a client rather than a URL (Options.Client), the
// dial options are unknown and the reader takes a dedicated connection of
// that client instead.
//
// Close interrupts a read in flight at once (the read fails), from any
// goroutine; a ReadConn whose read failed is closed and replaced.
type ReadConn struct {
	db  *DB
	key string                  // a key of the partition: on a cluster, its slot picks the node
	dc  rueidis.DedicatedClient // without dial options only

	mu     sync.Mutex
	conn   net.Conn // nil until the first read dials
	closed bool
	sc     *spinConn // conn's spinning TCP connection (spin.go); nil without a spin
	full   bool      // the last read returned its whole count: a backlog, no spin
	lane   bool      // a producer lane's own connection (append_own.go): it spins as a lane

	rr respReader
	w  []byte // the commands of one round trip
}

// errReadConnClosed is a read on a closed ReadConn.
var errReadConnClosed = errors.New("rdb: the reader's connection was closed")

// NewReadConn takes a connection for the reader of the partition whose
// keys include key (dialed when the first read goes out).
func (db *DB) NewReadConn(key string) *ReadConn {
	return &ReadConn{db: db, key: key}
}

// dialsOwn reports whether readers dial their own connections: false when
// the DB was given a client, whose dial options are unknown.
func (db *DB) dialsOwn() bool { return len(db.opt.InitAddress) > 0 }

// dedicated is the reader's dedicated connection of the given client,
// taken on first use; ctx ends the wait for a free connection of the
// client's pool (dedicate). Close gives the one taken back.
func (r *ReadConn) dedicated(ctx context.Context) (rueidis.DedicatedClient, error) {
	r.mu.Lock()
	dc, closed := r.dc, r.closed
	r.mu.Unlock()
	switch {
	case closed:
		return nil, errReadConnClosed
	case dc != nil:
		return dc, nil
	}
	dc, _, err := dedicate(ctx, r.db.c) // Close gives it back
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		dc.Close()
		return nil, errReadConnClosed
	}
	r.dc = dc
	return dc, nil
}

// Close closes the connection for good; a read in flight on it fails.
func (r *ReadConn) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.dc != nil {
		r.dc.Close()
	}
	if r.conn != nil {
		_ = r.conn.Close()
		defer r.db.untrack(r) // the DB's lock under r.mu; nothing takes r.mu under the DB's lock
	}
}

// drop closes the current connection (its replies are out of step) so that
// the next read dials again.
func (r *ReadConn) drop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn != nil {
		_ = r.conn.Close()
		r.conn = nil
		defer r.db.untrack(r)
	}
}

// readAddr is the address of the node that serves key: on a cluster the
// master of its slot (as a MOVED reply last named it, or CLUSTER SLOTS
// says), otherwise the one node the client talks to (with Sentinel, the
// current master).
func (db *DB) readAddr(ctx context.Context, key string) (string, error) {
	if db.IsCluster() {
		slot := KeySlot(key)
		if a, ok := db.moved.Load(slot); ok {
			return a.(string), nil
		}
		ranges, err := db.SlotRanges(ctx)
		if err != nil {
			return "", err
		}
		if a := MasterOf(ranges, slot); a != "" {
			return a, nil
		}
		return "", fmt.Errorf("rdb: no master serves slot %d", slot)
	}
	for a := range db.c.Nodes() {
		return a, nil
	}
	return "", errors.New("rdb: no Redis node is known")
}

// connect dials the partition's node and sets the connection up as rueidis
// would (AUTH, SELECT, CLIENT SETNAME), in one round trip.
func (r *ReadConn) connect(ctx context.Context) error {
	db := r.db
	addr, err := db.readAddr(ctx, r.key)
	if err != nil {
		return err
	}
	opt := db.opt
	d := opt.Dialer
	if d.Timeout == 0 {
		d.Timeout = 5 * time.Second
	}
	var conn net.Conn
	var sc *spinConn
	if opt.DialCtxFn != nil {
		conn, err = opt.DialCtxFn(ctx, addr, &d, opt.TLSConfig)
	} else {
		sp := db.spin.reader()
		if r.lane {
			sp = db.spin
		}
		conn, sc, err = dialOwn(ctx, addr, &d, opt.TLSConfig, sp)
	}
	if err != nil {
		db.moved.Delete(KeySlot(r.key)) // the hint may name a node that is gone
		return fmt.Errorf("rdb: dial %s: %w", addr, err)
	}
	if !db.track(r) {
		_ = conn.Close()
		return errDBClosed
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = conn.Close()
		db.untrack(r)
		return errReadConnClosed
	}
	r.conn, r.sc = conn, sc
	r.mu.Unlock()
	if r.rr.r == nil {
		r.rr.r = bufio.NewReaderSize(conn, 32<<10)
	} else {
		r.rr.r.Reset(conn)
	}
	w, n := r.w[:0], 0
	if opt.Password != "" {
		if opt.Username != "" {
			w = appendArgs(w, "AUTH", opt.Username, opt.Password)
		} else {
			w = appendArgs(w, "AUTH", opt.Password)
		}
		n++
	}
	if opt.SelectDB != 0 {
		w, n = appendArgs(w, "SELECT", strconv.Itoa(opt.SelectDB)), n+1
	}
	if opt.ClientName != "" {
		w, n = appendArgs(w, "CLIENT", "SETNAME", opt.ClientName), n+1
	}
	r.w = w
	if n == 0 {
		return nil
	}
	_ = conn.SetDeadline(time.Now().Add(d.Timeout))
	if _, err := conn.Write(w); err != nil {
		r.drop()
		return err
	}
	for range n {
		if err := r.rr.skip(); err != nil {
			r.drop()
			return fmt.Errorf("rdb: set up the connection to %s: %w", addr, err)
		}
	}
	return nil
}

// readRaw is ReadBatch on the reader's own RESP connection: the acks, the
// read and the summary written at once, their replies read in order.
func (db *DB) readRaw(ctx context.Context, rc *ReadConn, pk PartKeys, group, consumer string, count, blockMS int64, checkOthers bool, acks Acks) (es []Entry, others bool, ackErr, err error) {
	defer func() {
		// A node named by a MOVED reply that then failed (a set-up
		// that timed out, a lost connection, CLUSTERDOWN) may be a master
		// paused or cut off since: ask CLUSTER SLOTS again next time.
		if err != nil && movedTo(err) == "" {
			db.moved.Delete(KeySlot(pk.Stream))
		}
	}()
	if rc.conn == nil {
		if err = rc.connect(ctx); err != nil {
			return nil, false, nil, err
		}
	}
	retry := pk.Retry(group)
	w, na := rc.w[:0], 0
	if len(acks.Main) > 0 {
		w, na = appendIDs(appendStrs(appendCmd(w, 3+len(acks.Main)), "XACK", pk.Stream, group), acks.Main), na+1
	}
	if len(acks.Retry) > 0 {
		w = appendIDs(appendStrs(appendCmd(w, 3+len(acks.Retry)), "XACK", retry, group), acks.Retry)
		w, na = appendIDs(appendStrs(appendCmd(w, 2+len(acks.Retry)), "XDEL", retry), acks.Retry), na+2
	}
	if len(acks.Clear) > 0 {
		w, na = appendIDs(appendStrs(appendCmd(w, 2+len(acks.Clear)), "HDEL", pk.Attempts(group)), acks.Clear), na+1
	}
	w = appendStrs(appendCmd(w, 13), "XREADGROUP", "GROUP", group, consumer, "COUNT")
	w = appendArg(appendInt(w, count), "BLOCK")
	w = appendStrs(appendInt(w, blockMS), "STREAMS", pk.Stream, retry, ">", ">")
	if checkOthers {
		w = appendArgs(w, "XPENDING", pk.Stream, group)
	}
	rc.w = w
	if rc.sc != nil {
		rc.sc.held.Store(rc.full)
	}
	// The deadline bounds a silent server; Close interrupts the rest.
	_ = rc.conn.SetDeadline(time.Now().Add(time.Duration(blockMS)*time.Millisecond + ConnWriteTimeout))
	if _, err = rc.conn.Write(w); err != nil {
		rc.drop()
		return nil, false, nil, err
	}
	for range na {
		if e := rc.rr.skip(); e != nil {
			if !isReply(e) {
				rc.drop()
				return nil, false, nil, e
			}
			if ackErr == nil {
				ackErr = e
			}
		}
	}
	if es, err = rc.rr.entries(); err != nil {
		if a := movedAddr(movedTo(err), rc.conn); a != "" {
			db.moved.Store(KeySlot(pk.Stream), a)
		}
		rc.drop() // the summary's reply is still to come
		return nil, false, ackErr, err
	}
	rc.full = int64(len(es)) >= count
	if checkOthers {
		v, e := rc.rr.value(0)
		switch {
		case e == nil:
			others = othersPendingIn(v, consumer)
		case !isReply(e):
			rc.drop() // out of step: the next read dials again
		}
	}
	return es, others, ackErr, nil
}

// movedAddr is the dialable address of a MOVED reply's endpoint moved,
// read on conn: an IPv6 host gets its brackets ("::1:7001" is
// "[::1]:7001"), an empty host is conn's own, and an unknown one ("?") or
// a malformed one gives "" (the next read asks CLUSTER SLOTS).
func movedAddr(moved string, conn net.Conn) string {
	i := strings.LastIndexByte(moved, ':')
	if i < 0 {
		return ""
	}
	host, port := moved[:i], moved[i+1:]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" && conn != nil {
		host, _, _ = net.SplitHostPort(conn.RemoteAddr().String())
	}
	if host == "" || host == "?" || port == "" {
		return ""
	}
	return net.JoinHostPort(host, port)
}

// othersPendingIn reports whether an XPENDING summary read by respReader
// ([count, min, max, [[consumer, count], ...]]) shows entries pending for
// a consumer other than consumer.
func othersPendingIn(v any, consumer string) bool {
	arr, _ := v.([]any)
	if len(arr) < 4 {
		return false
	}
	cs, _ := arr[3].([]any)
	for _, c := range cs {
		if kv, _ := c.([]any); len(kv) == 2 {
			if name, _ := kv[0].(string); name != consumer {
				return true
			}
		}
	}
	return false
}

// appendIDs appends each of ids as an argument.
func appendIDs(b []byte, ids []string) []byte {
	for _, id := range ids {
		b = appendArg(b, id)
	}
	return b
}

// appendInt appends n as an argument.
func appendInt(b []byte, n int64) []byte {
	var d [20]byte
	v := strconv.AppendInt(d[:0], n, 10)
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, '\r', '\n')
	b = append(b, v...)
	return append(b, '\r', '\n')
}

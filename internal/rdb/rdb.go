// Package rdb encapsulates Herald's interactions with Redis. It is the only
// package that sends commands; keys.go spells every key and lua/ holds every
// script.
package rdb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// DB is a Redis connection (standalone or cluster) plus Herald's key layout.
type DB struct {
	c rueidis.Client // unexported: every command goes through a method of DB
	// lanes gives the producer lanes their dedicated connections: the same
	// options with small buffers (laneBuffer, laneRing), because a lane has
	// one batch in flight and there are up to four per published partition.
	lanes rueidis.Client
	Keys  Keys
	own   bool
	opt   rueidis.ClientOption // how Open dialed (for raw connections such as MONITOR)
	spin  Spin                 // how lanes and readers poll for a reply (spin.go)

	// noPlain is set once a server refused CLIENT INFO (the in-process
	// engine, Redis before 6.2): AppendPlain cannot fence a lost
	// connection there, so appends take the script.
	noPlain atomic.Bool

	// moved maps a slot to the master that a MOVED reply to a partition
	// reader named (ReadConn dials it next; a failed dial forgets it).
	moved sync.Map

	// The connections Herald dialed itself (readers', lanes' own), closed
	// by Close; none is dialed after it.
	ownMu  sync.Mutex
	owns   map[*ReadConn]struct{}
	closed bool
}

// errDBClosed is a dial of a DB that was closed.
var errDBClosed = errors.New("rdb: the client is closed")

// track records rc's connection for Close; false when the DB is closed.
func (db *DB) track(rc *ReadConn) bool {
	db.ownMu.Lock()
	defer db.ownMu.Unlock()
	if db.closed {
		return false
	}
	if db.owns == nil {
		db.owns = map[*ReadConn]struct{}{}
	}
	db.owns[rc] = struct{}{}
	return true
}

// untrack forgets rc (its connection was closed).
func (db *DB) untrack(rc *ReadConn) {
	db.ownMu.Lock()
	delete(db.owns, rc)
	db.ownMu.Unlock()
}

// ErrPlainUnsupported is returned by AppendPlain when the server cannot
// name a connection (no CLIENT INFO); PlainSupported is false from then on.
var ErrPlainUnsupported = errors.New("rdb: the server has no CLIENT INFO; plain appends are off")

// PlainSupported reports whether AppendPlain may be used: false once the
// server refused CLIENT INFO.
func (db *DB) PlainSupported() bool { return !db.noPlain.Load() }

// laneBuffer and laneRing size a producer lane's connection: 128 KiB read
// and write buffers (a batch of MaxBatch 100-byte events goes out in one
// write) and a ring of 2^9 commands (a whole batch in flight), against
// rueidis's 512 KiB each and 2^10. Measured on 2 cores: a client publishing
// to and consuming 256 partitions held 362 MiB of heap and 123 MB of RSS
// with the defaults, 126 MiB and 77 MB with these sizes; PublishAsync and
// PublishBatch from 64 goroutines moved the same within the noise (three
// runs each, alternated; docs/scaling.md).
const (
	laneBuffer = 128 << 10
	laneRing   = 9
)

// ConnWriteTimeout is how long a connection may fail to write or answer
// before the client drops it (rueidis ClientOption.ConnWriteTimeout).
const ConnWriteTimeout = 10 * time.Second

// Options configure Open.
type Options struct {
	URL       string
	TLS       *tls.Config // overrides the TLS settings of a rediss:// URL
	Namespace string
	Client    rueidis.Client // use this client instead of dialing; Close leaves it open
	// SpinWait is how long producer lanes and partition readers poll their
	// sockets for a reply before they park (SpinFor: 0 auto, <0 off).
	// Not used with Client, whose connections Herald does not dial.
	SpinWait time.Duration
}

// ParseURL checks a Redis URL and turns it into client options. Accepted:
// redis://[user:pass@]host:port[/db], rediss:// (TLS), several seeds
// separated by commas in the host part (redis://h1:7001,h2:7002, also
// redis+cluster://), and redis+sentinel://[user:pass@]s1:26379,s2:26379/MASTER[/db]
// naming the Sentinels and the monitored master.
func ParseURL(raw string) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	if strings.TrimSpace(raw) == "" {
		return opt, errors.New("empty Redis URL; use redis://host:port")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse rejects "h1:1,h2:2" only in odd cases; report plainly.
		return opt, fmt.Errorf("malformed Redis URL %q: %v; use redis://host:port", raw, err)
	}
	sentinelMaster := ""
	switch u.Scheme {
	case "redis", "rediss", "redis+cluster":
	case "redis+sentinel", "rediss+sentinel":
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if parts[0] == "" {
			return opt, fmt.Errorf("invalid Redis URL %q: it names no master; use redis+sentinel://host:26379/MASTER_NAME", raw)
		}
		sentinelMaster = parts[0]
		u.Path = "/" + strings.Join(parts[1:], "/")
		if len(parts) == 1 {
			u.Path = ""
		}
		u.Scheme = strings.TrimSuffix(u.Scheme, "+sentinel")
	default:
		return opt, fmt.Errorf("unsupported Redis URL scheme %q in %q; use redis://host:port, rediss:// for TLS or redis+sentinel://host:26379/MASTER", u.Scheme, raw)
	}
	if u.Host == "" {
		return opt, fmt.Errorf("invalid Redis URL %q: it has no host; use redis://host:port", raw)
	}
	hosts := strings.Split(u.Host, ",")
	first := *u
	first.Host = hosts[0]
	if first.Scheme == "redis+cluster" {
		first.Scheme = "redis"
	}
	opt, err = rueidis.ParseURL(first.String())
	if err != nil {
		return opt, fmt.Errorf("malformed Redis URL %q: %v", raw, err)
	}
	for _, h := range hosts[1:] {
		if !strings.Contains(h, ":") {
			h += ":6379"
		}
		opt.InitAddress = append(opt.InitAddress, h)
	}
	for _, a := range opt.InitAddress {
		if _, port, ok := strings.Cut(a, ":"); !ok || port == "" {
			return opt, fmt.Errorf("invalid Redis URL %q: address %q has no port", raw, a)
		}
	}
	if sentinelMaster != "" {
		opt.Sentinel.MasterSet = sentinelMaster
		opt.Sentinel.Username, opt.Sentinel.Password = opt.Username, opt.Password
		opt.Sentinel.TLSConfig = opt.TLSConfig
	}
	return opt, nil
}

// Open connects to Redis.
func Open(ctx context.Context, o Options) (*DB, error) {
	db := &DB{Keys: Keys{NS: o.Namespace}}
	if o.Client != nil {
		db.c, db.lanes = o.Client, o.Client
		return db, nil
	}
	opt, err := ParseURL(o.URL)
	if err != nil {
		return nil, err
	}
	if o.TLS != nil {
		opt.TLSConfig = o.TLS
	}
	opt.DisableCache = true                          // no client-side caching: every read is fresh
	opt.ClientSetInfo = rueidis.DisableClientSetInfo // works with servers older than 7.2
	opt.ClientName = "herald"
	opt.Dialer.Timeout = 5 * time.Second
	opt.ConnWriteTimeout = ConnWriteTimeout
	opt.BlockingPoolSize = 4096
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to Redis at %s: %w", strings.Join(opt.InitAddress, ","), err)
	}
	lopt := opt
	lopt.ReadBufferEachConn, lopt.WriteBufferEachConn, lopt.RingScaleEachConn = laneBuffer, laneBuffer, laneRing
	db.spin = SpinFor(o.SpinWait)
	if db.spin.Wait > 0 {
		lopt.DialCtxFn = dialSpin(db.spin)
	}
	lanes, err := rueidis.NewClient(lopt)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to Redis at %s: %w", strings.Join(opt.InitAddress, ","), err)
	}
	db.c, db.lanes, db.own, db.opt = c, lanes, true, opt
	// PING is keyless: a cluster client may send it to any seed, a dead one
	// too. One node that answers is enough.
	var perr error
	for _, n := range c.Nodes() {
		if perr = n.Do(ctx, n.B().Ping().Build()).Error(); perr == nil {
			return db, nil
		}
	}
	c.Close()
	lanes.Close()
	if perr == nil {
		perr = errors.New("no node answered")
	}
	return nil, fmt.Errorf("connect to Redis at %s: %w", strings.Join(opt.InitAddress, ","), perr)
}

// Close closes the client if Open dialed it, and the connections Herald
// dialed itself (a read or append in flight on one fails at once).
func (db *DB) Close() {
	db.ownMu.Lock()
	db.closed = true
	owns := db.owns
	db.owns = nil
	db.ownMu.Unlock()
	for rc := range owns {
		rc.Close()
	}
	if db.own {
		db.c.Close()
		db.lanes.Close()
	}
}

// IsNoGroup reports a NOGROUP reply (the group or its stream is gone, e.g.
// after a restart of a Redis without persistence).
func IsNoGroup(err error) bool { return replyPrefix(err, "NOGROUP") }

// IsStale reports that an append was refused because its batch sequence is
// older than the producer's last one.
func IsStale(err error) bool { return replyPrefix(err, "HERALD_STALE") }

// IsGap reports that an append waits for an earlier batch of its producer.
func IsGap(err error) bool { return replyPrefix(err, "HERALD_GAP") }

// IsBusyGroup reports a BUSYGROUP reply (the group exists).
func IsBusyGroup(err error) bool { return replyPrefix(err, "BUSYGROUP") }

// Transient reports whether err may go away by itself: connection errors,
// timeouts, and replies such as CLUSTERDOWN, TRYAGAIN, LOADING, MASTERDOWN
// and READONLY (a failover in progress).
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	msg, ok := replyText(err)
	if !ok {
		return true // network, timeout, closed connection
	}
	for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN", "READONLY", "BUSY ", "NOREPLICAS", "MOVED", "ASK", "HERALD_GAP"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func replyPrefix(err error, p string) bool {
	msg, ok := replyText(err)
	return ok && strings.HasPrefix(msg, p)
}

// isRedisErr is the text of an error reply read through rueidis.
func isRedisErr(err error) (string, bool) {
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return "", false
	}
	return re.Error(), true
}

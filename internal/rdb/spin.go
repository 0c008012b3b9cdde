package rdb

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// Waiting for a reply: spin, then park.
//
// A producer lane and a partition reader each send a command and wait for
// its reply on a connection of their own. Parked in Go's poller, the
// waiting goroutine is woken by the runtime once the reply is there: a
// netpoll wake-up, and often a thread woken from sleep, per round trip. On
// a machine with idle cores it is cheaper to poll the socket for a short
// while first. Measured on 16 cores (2026-11-27, docs/design.md, "Waiting
// for the reply"): one event per call from one goroutine went from 27.1k to
// 35.7k events/s, and the publish-to-handler p50 at 20,000 events/s from
// 1.21-1.47x raw to 0.91-1.12x. A partition reader spins only after a
// read that came back short of its count (it has caught up, and the next
// reply waits for a publish); after a full one the next reply is a backlog
// that Redis takes longer to build than a spin lasts. On 2 cores, where the spinning goroutine
// takes the CPU that redis-server or the other goroutines need, it made
// the same p50 1.68x and p99 3.8x, so it is on by default only where
// GOMAXPROCS is SpinMinProcs or more.
const (
	// DefaultSpinWait is how long a wait for a reply polls the socket
	// before it parks, when the spin is on.
	DefaultSpinWait = 30 * time.Microsecond
	// MaxSpinWait bounds SpinWait: a spin holds a CPU.
	MaxSpinWait = time.Millisecond
	// SpinMinProcs is the GOMAXPROCS from which the spin is on by default.
	SpinMinProcs = 8
	// spinMisses spins in a row that ended without a reply make a
	// connection stop spinning for a while: 1, 2, 4 ... 64 reads, doubling
	// with every further miss, until a spin gets its reply again (a reader
	// of a quiet partition, a server across a network).
	spinMisses = 4
)

// spinning counts the goroutines of the process polling a socket now. At
// most a quarter of GOMAXPROCS spin at once (at least one); the others
// park at once.
var spinning atomic.Int32

// SpinWaitFor resolves a configured spin: zero takes DefaultSpinWait where
// GOMAXPROCS is at least SpinMinProcs and none below, a negative value
// turns it off, and a positive one is kept (at most MaxSpinWait).
func SpinWaitFor(configured time.Duration) time.Duration {
	switch {
	case configured < 0:
		return 0
	case configured == 0:
		if runtime.GOMAXPROCS(0) >= SpinMinProcs {
			return DefaultSpinWait
		}
		return 0
	}
	return min(configured, MaxSpinWait)
}

// spinConn is a TCP connection whose reads poll the socket for up to wait
// before they park. One goroutine reads it at a time (a lane's caller or
// rueidis's reader, a partition reader); the counts are atomic all the same.
type spinConn struct {
	*net.TCPConn
	rc     syscall.RawConn
	wait   time.Duration
	limit  int32        // spinning goroutines allowed in the process
	misses atomic.Int32 // spins in a row that parked in the end
	skip   atomic.Int32 // reads left that park without a spin
	held   atomic.Bool  // set by a partition reader reading a backlog: no spin
}

// withSpin wraps a freshly dialed connection; c itself when wait is zero
// or c is not TCP.
func withSpin(c net.Conn, wait time.Duration) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || wait <= 0 {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &spinConn{TCPConn: tc, rc: rc, wait: wait, limit: int32(max(1, runtime.GOMAXPROCS(0)/4))}
}

// Read polls the socket for up to the spin wait, then reads as a plain
// connection does (deadlines, close and errors as net.TCPConn's).
func (s *spinConn) Read(b []byte) (int, error) {
	if len(b) == 0 || s.held.Load() {
		return s.TCPConn.Read(b)
	}
	if s.skip.Load() > 0 {
		s.skip.Add(-1)
		return s.TCPConn.Read(b)
	}
	if spinning.Add(1) > s.limit {
		spinning.Add(-1)
		return s.TCPConn.Read(b)
	}
	n, err, got := s.spin(b)
	spinning.Add(-1)
	if got {
		s.misses.Store(0)
		return n, err
	}
	if m := s.misses.Add(1); m >= spinMisses {
		s.skip.Store(1 << min(m-spinMisses, 6))
	}
	return s.TCPConn.Read(b)
}

// spin reads b without blocking until something or an error comes, or the
// wait is over (got false: nothing was read).
func (s *spinConn) spin(b []byte) (n int, err error, got bool) {
	start := time.Now()
	var rerr error
	cerr := s.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), b)
			switch rerr {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				if time.Since(start) < s.wait {
					continue
				}
			default:
				got = true
			}
			return true // never park here: the caller reads as usual
		}
	})
	switch {
	case cerr != nil || !got:
		return 0, nil, false // closed, or a deadline passed: the plain read says so
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}, true
	case n == 0:
		return 0, io.EOF, true
	}
	return n, nil, true
}

// dialSpin dials addr over TCP (and TLS when cfg is set) with reads that
// spin for wait: the lanes' rueidis DialCtxFn.
func dialSpin(wait time.Duration) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	return func(ctx context.Context, addr string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
		c, _, err := dialOwn(ctx, addr, d, cfg, wait)
		return c, err
	}
}

// dialOwn dials addr over TCP (and TLS when cfg is set) with reads that
// spin for wait, and returns the spinning connection under the TLS one
// too (nil without a spin), for a partition reader to hold its spin.
func dialOwn(ctx context.Context, addr string, d *net.Dialer, cfg *tls.Config, wait time.Duration) (net.Conn, *spinConn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c = withSpin(c, wait)
	sc, _ := c.(*spinConn)
	if cfg != nil {
		cfg = cfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		c = tls.Client(c, cfg)
	}
	return c, sc, nil
}

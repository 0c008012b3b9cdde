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
// netpoll wake-up, and often a thread woken from sleep, per round trip.
// Where a CPU is idle it is cheaper to poll the socket for a short while
// first (docs/design.md, "Waiting for the reply: spin, then park"):
//
//   - from SpinMinProcs cores, any such read spins, at most a quarter of
//     GOMAXPROCS at once. 16 cores: one event per call from one goroutine
//     27.1k -> 40.2k events/s, publish-to-handler p50 at 20,000 events/s
//     0.87-0.99x raw against 1.08-1.40x without;
//   - below, only a lane's read that is the only one of the process
//     waiting (Spin.Alone), and readers never: 2 cores, one goroutine
//     21-22k -> 33-37k events/s. There a spinning reader or a spin beside
//     other waiting reads takes the CPU that redis-server and the other
//     goroutines need (one spinner at a time made the p50 1.68x raw, and
//     16 publishing goroutines 146k -> 44k events/s).
//
// A partition reader spins only after a read that came back short of its
// count (it has caught up; the next reply waits for a publish); after a
// full one the next reply is a backlog that Redis takes longer to build
// than a spin lasts.
const (
	// DefaultSpinWait is how long a wait for a reply polls the socket
	// before it parks, when the spin is on.
	DefaultSpinWait = 30 * time.Microsecond
	// MaxSpinWait bounds SpinWait: a spin holds a CPU.
	MaxSpinWait = time.Millisecond
	// SpinMinProcs is the GOMAXPROCS from which any read may spin by
	// default; below it only a lane's read alone does.
	SpinMinProcs = 8
	// spinMisses spins in a row that ended without a reply make a
	// connection stop spinning for a while: 1, 2, 4 ... 64 reads, doubling
	// with every further miss, until a spin gets its reply again (a reader
	// of a quiet partition, a server across a network).
	spinMisses = 4
)

// spinning counts the goroutines of the process polling a socket now. At
// most a quarter of GOMAXPROCS spin at once (at least one); the others
// park at once. waiting counts the reads in progress on spinning
// connections, spinning or parked.
var spinning, waiting atomic.Int32

// holds counts the batches of PublishAsync events in flight in the process
// (HoldSpins): while there are any, no read spins alone. The goroutines
// that publish asynchronously keep running while a lane waits, and want
// the CPU that its spin would take (2 cores, PublishAsync from 16
// goroutines: 748-807k events/s with such spins against 792-811k without).
var holds atomic.Int32

// HoldSpins keeps reads that spin only alone from spinning until the
// returned function is called: the writer holds it while a batch with
// PublishAsync events is in flight.
func HoldSpins() (release func()) {
	holds.Add(1)
	return func() { holds.Add(-1) }
}

// Spin is how the reads of a lane's or reader's connection wait for a
// reply.
type Spin struct {
	// Wait is how long a read polls the socket before it parks (0: never).
	Wait time.Duration
	// Alone: a read spins only while it is the only one of the process
	// waiting for Redis on such a connection. Then nothing else of the
	// process wants the CPU the spin takes, and a Redis on the same machine
	// is working on this very command.
	Alone bool
}

// reader is the spin of a partition reader's connection: the same, except
// that where the spin is for a read alone (few cores) a reader never spins
// and only counts as waiting. Spinning there for the next publish takes a
// CPU from the publishing goroutine and from redis-server: on 2 cores,
// alternated four times at 20,000 events/s, the p50 was 1.21-1.44x raw
// with it against 1.16-1.23x without.
func (s Spin) reader() Spin {
	if s.Alone {
		return Spin{Alone: true}
	}
	return s
}

// String is "off", the wait ("30µs"), or the wait "while alone".
func (s Spin) String() string {
	switch {
	case s.Wait <= 0:
		return "off"
	case s.Alone:
		return s.Wait.String() + " while alone"
	}
	return s.Wait.String()
}

// SpinFor resolves a configured spin. Zero takes DefaultSpinWait: where
// GOMAXPROCS is at least SpinMinProcs for any read (at most a quarter of
// GOMAXPROCS spinning at once), below that only for a read that is the only
// one of the process waiting (Alone). A negative value turns it off; a
// positive one is kept (at most MaxSpinWait) and spins as on many cores.
func SpinFor(configured time.Duration) Spin {
	switch {
	case configured < 0:
		return Spin{}
	case configured == 0:
		return Spin{Wait: DefaultSpinWait, Alone: runtime.GOMAXPROCS(0) < SpinMinProcs}
	}
	return Spin{Wait: min(configured, MaxSpinWait)}
}

// spinConn is a TCP connection whose reads poll the socket for up to wait
// before they park. One goroutine reads it at a time (a lane's caller or
// rueidis's reader, a partition reader); the counts are atomic all the same.
type spinConn struct {
	*net.TCPConn
	rc     syscall.RawConn
	wait   time.Duration
	alone  bool         // spin only as the process's one waiting read
	limit  int32        // spinning goroutines allowed in the process
	misses atomic.Int32 // spins in a row that parked in the end
	skip   atomic.Int32 // reads left that park without a spin
	held   atomic.Bool  // set by a partition reader reading a backlog: no spin

	// The spin in progress: rc.Read's callback is made once (poll) and
	// works on these, so that a spin allocates nothing. A connection is
	// read by one goroutine at a time (rueidis's reader, a lane or a
	// partition reader).
	poll  func(fd uintptr) bool
	buf   []byte
	start time.Time
	n     int
	rerr  error
	got   bool
}

// withSpin wraps a freshly dialed connection; c itself when the spin is
// off or c is not TCP. A wrapped connection whose Wait is zero never spins
// and only counts its reads as waiting (a reader's, Spin.reader).
func withSpin(c net.Conn, sp Spin) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || (sp.Wait <= 0 && !sp.Alone) {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &spinConn{TCPConn: tc, rc: rc, wait: sp.Wait, alone: sp.Alone, limit: int32(max(1, runtime.GOMAXPROCS(0)/4))}
	s.poll = s.pollFD
	return s
}

// Read polls the socket for up to the spin wait, then reads as a plain
// connection does (deadlines, close and errors as net.TCPConn's).
func (s *spinConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return s.TCPConn.Read(b)
	}
	w := waiting.Add(1)
	defer waiting.Add(-1)
	if s.wait <= 0 || s.held.Load() || (s.alone && (w > 1 || holds.Load() > 0)) {
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
	s.buf, s.start, s.n, s.rerr, s.got = b, time.Now(), 0, nil, false
	cerr := s.rc.Read(s.poll)
	n, rerr, got := s.n, s.rerr, s.got
	s.buf, s.rerr = nil, nil
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

// pollFD is rc.Read's callback of a spin: non-blocking reads of s.buf
// until something or an error comes, or s.wait has passed since s.start.
func (s *spinConn) pollFD(fd uintptr) bool {
	for {
		s.n, s.rerr = syscall.Read(int(fd), s.buf)
		switch s.rerr {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if time.Since(s.start) < s.wait {
				continue
			}
		default:
			s.got = true
		}
		return true // never park here: the caller reads as usual
	}
}

// dialSpin dials addr over TCP (and TLS when cfg is set) with reads that
// spin as sp says: the lanes' rueidis DialCtxFn.
func dialSpin(sp Spin) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	return func(ctx context.Context, addr string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
		c, _, err := dialOwn(ctx, addr, d, cfg, sp)
		return c, err
	}
}

// dialOwn dials addr over TCP (and TLS when cfg is set) with reads that
// spin as sp says, and returns the spinning connection under the TLS one
// too (nil without a spin), for a partition reader to hold its spin.
func dialOwn(ctx context.Context, addr string, d *net.Dialer, cfg *tls.Config, sp Spin) (net.Conn, *spinConn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c = withSpin(c, sp)
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

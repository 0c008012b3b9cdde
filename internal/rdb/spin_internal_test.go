package rdb

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// spinPair is a spinning client connection and the server side of it, on
// loopback.
func spinPair(t *testing.T, wait time.Duration) (*spinConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = c.Close(); _ = srv.Close() })
	sc, ok := withSpin(c, Spin{Wait: wait, Alone: wait == 0}).(*spinConn)
	if !ok {
		t.Fatalf("withSpin(%T) did not wrap a TCP connection", c)
	}
	return sc, srv
}

// A reply that comes within the spin is read by the spin; one that comes
// later is read after the park, and four misses in a row make the
// connection park at once for the next read, then for 2, 4 ... reads.
func TestSpinConnReadsWithinAndAfterTheSpin(t *testing.T) {
	sc, srv := spinPair(t, 50*time.Millisecond)
	buf := make([]byte, 64)
	go func() { time.Sleep(time.Millisecond); _, _ = srv.Write([]byte("soon")) }()
	n, err := sc.Read(buf)
	if err != nil || string(buf[:n]) != "soon" || sc.misses.Load() != 0 {
		t.Fatalf("read within the spin: %q, %v, misses %d; want \"soon\", nil, 0", buf[:n], err, sc.misses.Load())
	}

	sc.wait = 100 * time.Microsecond
	for i := 1; i <= spinMisses; i++ {
		go func() { time.Sleep(20 * time.Millisecond); _, _ = srv.Write([]byte("late")) }()
		n, err := sc.Read(buf)
		if err != nil || string(buf[:n]) != "late" {
			t.Fatalf("read %d after the spin: %q, %v; want \"late\"", i, buf[:n], err)
		}
		if sc.misses.Load() != int32(i) {
			t.Fatalf("misses after %d late replies: %d", i, sc.misses.Load())
		}
	}
	if sc.skip.Load() != 1 {
		t.Fatalf("after %d misses the next read should park at once (skip 1), skip is %d", spinMisses, sc.skip.Load())
	}
	go func() { _, _ = srv.Write([]byte("x")) }()
	if _, err := sc.Read(buf); err != nil || sc.skip.Load() != 0 || sc.misses.Load() != spinMisses {
		t.Fatalf("skipped read: %v, skip %d, misses %d; want nil, 0, %d (a skipped read is no miss)", err, sc.skip.Load(), sc.misses.Load(), spinMisses)
	}
	go func() { time.Sleep(20 * time.Millisecond); _, _ = srv.Write([]byte("y")) }()
	if _, err := sc.Read(buf); err != nil || sc.skip.Load() != 2 {
		t.Fatalf("fifth miss: %v, skip %d; want the skip doubled to 2", err, sc.skip.Load())
	}
	sc.misses.Store(100) // the skip stops doubling at 64
	sc.skip.Store(0)
	go func() { time.Sleep(20 * time.Millisecond); _, _ = srv.Write([]byte("z")) }()
	if _, err := sc.Read(buf); err != nil || sc.skip.Load() != 64 {
		t.Fatalf("many misses: %v, skip %d; want 64", err, sc.skip.Load())
	}
	sc.skip.Store(0)
	sc.wait = 50 * time.Millisecond
	go func() { time.Sleep(time.Millisecond); _, _ = srv.Write([]byte("hit")) }()
	if n, err := sc.Read(buf); err != nil || string(buf[:n]) != "hit" || sc.misses.Load() != 0 {
		t.Fatalf("a hit: %q, %v, misses %d; want the misses reset", buf[:n], err, sc.misses.Load())
	}
}

// A read deadline, Close from another goroutine and the peer's close end a
// read as they end a plain connection's.
func TestSpinConnDeadlineCloseAndEOF(t *testing.T) {
	sc, srv := spinPair(t, time.Millisecond)
	buf := make([]byte, 8)
	if err := sc.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if _, err := sc.Read(buf); !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	if err := sc.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(20 * time.Millisecond); _ = sc.Close() }()
	if _, err := sc.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read interrupted by Close: %v, want net.ErrClosed", err)
	}

	sc2, srv2 := spinPair(t, 50*time.Millisecond)
	_ = srv
	go func() { time.Sleep(time.Millisecond); _ = srv2.Close() }()
	if n, err := sc2.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read of a connection the peer closed (within the spin): %d, %v; want 0, io.EOF", n, err)
	}
}

// No more goroutines spin at once than the limit: a read that finds the
// limit taken parks at once and counts no miss.
func TestSpinConnLimit(t *testing.T) {
	sc, srv := spinPair(t, 50*time.Millisecond)
	spinning.Add(sc.limit)
	defer spinning.Add(-sc.limit)
	go func() { time.Sleep(20 * time.Millisecond); _, _ = srv.Write([]byte("a")) }()
	start := time.Now()
	buf := make([]byte, 8)
	if _, err := sc.Read(buf); err != nil {
		t.Fatal(err)
	}
	if sc.misses.Load() != 0 {
		t.Fatalf("a read over the limit spun: misses %d", sc.misses.Load())
	}
	if spinning.Load() != sc.limit {
		t.Fatalf("spinning %d after the read, want %d (the count given back)", spinning.Load(), sc.limit)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("read took too long")
	}
}

// SpinFor: off when negative; by default on for every read from
// SpinMinProcs cores and only for a read alone below; bounded.
func TestSpinFor(t *testing.T) {
	if got := SpinFor(-1); got.Wait != 0 || got.String() != "off" {
		t.Fatalf("SpinFor(-1) = %v, want off", got)
	}
	if got := SpinFor(time.Hour); got.Wait != MaxSpinWait || got.Alone {
		t.Fatalf("SpinFor(1h) = %+v, want %v for every read", got, MaxSpinWait)
	}
	if got := SpinFor(5 * time.Microsecond); got.Wait != 5*time.Microsecond || got.Alone {
		t.Fatalf("SpinFor(5us) = %+v", got)
	}
	prev := runtime.GOMAXPROCS(SpinMinProcs - 1)
	defer runtime.GOMAXPROCS(prev)
	if got := SpinFor(0); got.Wait != DefaultSpinWait || !got.Alone || got.String() != "30µs while alone" {
		t.Fatalf("SpinFor(0) with GOMAXPROCS %d = %+v (%v), want %v while alone", SpinMinProcs-1, got, got, DefaultSpinWait)
	}
	runtime.GOMAXPROCS(SpinMinProcs)
	if got := SpinFor(0); got.Wait != DefaultSpinWait || got.Alone {
		t.Fatalf("SpinFor(0) with GOMAXPROCS %d = %+v, want %v for every read", SpinMinProcs, got, DefaultSpinWait)
	}
	if c := withSpin(&net.UnixConn{}, Spin{Wait: time.Millisecond}); c == nil {
		t.Fatal("withSpin of a non-TCP connection returned nil")
	} else if _, ok := c.(*spinConn); ok {
		t.Fatal("withSpin wrapped a non-TCP connection")
	}
}

// A held connection (a partition reader reading a backlog) parks at once:
// no spin, no miss.
func TestSpinConnHeld(t *testing.T) {
	sc, srv := spinPair(t, 50*time.Millisecond)
	sc.held.Store(true)
	go func() { time.Sleep(20 * time.Millisecond); _, _ = srv.Write([]byte("a")) }()
	buf := make([]byte, 8)
	if _, err := sc.Read(buf); err != nil {
		t.Fatal(err)
	}
	if sc.misses.Load() != 0 {
		t.Fatalf("a held read spun: misses %d", sc.misses.Load())
	}
}

// A connection that spins only alone parks at once while another read of
// the process waits, and spins when it is the only one.
func TestSpinConnAlone(t *testing.T) {
	sc, srv := spinPair(t, 50*time.Millisecond)
	sc.alone = true
	waiting.Add(1) // another read waits
	go func() { time.Sleep(20 * time.Millisecond); _, _ = srv.Write([]byte("a")) }()
	buf := make([]byte, 8)
	_, err := sc.Read(buf)
	waiting.Add(-1)
	if err != nil {
		t.Fatal(err)
	}
	if sc.misses.Load() != 0 {
		t.Fatalf("a read beside another waiting one spun: misses %d", sc.misses.Load())
	}
	// Connections of other tests' clients may still be reading: wait for
	// them to finish, then this read is alone.
	for deadline := time.Now().Add(10 * time.Second); waiting.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads of other connections still waiting after 10s", waiting.Load())
		}
	}
	sc.wait = 100 * time.Microsecond
	go func() { time.Sleep(20 * time.Millisecond); _, _ = srv.Write([]byte("b")) }()
	if _, err := sc.Read(buf); err != nil {
		t.Fatal(err)
	}
	if sc.misses.Load() != 1 {
		t.Fatalf("a read alone did not spin: misses %d, want 1", sc.misses.Load())
	}
}

// Where lanes spin only alone, a reader never spins and counts as waiting,
// so that no lane spins beside it.
func TestSpinReaderAlone(t *testing.T) {
	if r := (Spin{Wait: DefaultSpinWait, Alone: true}).reader(); r.Wait != 0 || !r.Alone {
		t.Fatalf("reader of a spin alone: %+v, want no wait, counted", r)
	}
	if r := (Spin{Wait: DefaultSpinWait}).reader(); r.Wait != DefaultSpinWait {
		t.Fatalf("reader of a spin for any read: %+v, want the same wait", r)
	}
	rd, srv := spinPair(t, 0)
	rd.alone = true
	ln, srv2 := spinPair(t, time.Millisecond) // a spin would miss: the reply comes after 20ms
	ln.alone = true
	go func() { time.Sleep(100 * time.Millisecond); _, _ = srv.Write([]byte("r")) }()
	readerIn := make(chan error, 1)
	go func() { _, err := rd.Read(make([]byte, 8)); readerIn <- err }()
	for deadline := time.Now().Add(5 * time.Second); waiting.Load() < 1; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reader's read is not counted as waiting")
		}
	}
	go func() { time.Sleep(20 * time.Millisecond); _, _ = srv2.Write([]byte("l")) }()
	if _, err := ln.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if err := <-readerIn; err != nil {
		t.Fatal(err)
	}
	if rd.misses.Load() != 0 || ln.misses.Load() != 0 {
		t.Fatalf("spun beside a waiting reader: reader misses %d, lane misses %d; want 0, 0", rd.misses.Load(), ln.misses.Load())
	}
}

// While a batch of asynchronous publishes is in flight (HoldSpins), a read
// that spins only alone parks at once.
func TestSpinHeldByAsyncBatch(t *testing.T) {
	sc, srv := spinPair(t, time.Millisecond) // a spin would miss: the reply comes after 20ms
	sc.alone = true
	release := HoldSpins()
	for deadline := time.Now().Add(10 * time.Second); waiting.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads of other connections still waiting after 10s", waiting.Load())
		}
	}
	go func() { time.Sleep(20 * time.Millisecond); _, _ = srv.Write([]byte("a")) }()
	_, err := sc.Read(make([]byte, 8))
	release()
	if err != nil {
		t.Fatal(err)
	}
	if sc.misses.Load() != 0 {
		t.Fatalf("a read alone spun while an async batch was in flight: misses %d", sc.misses.Load())
	}
	go func() { time.Sleep(20 * time.Millisecond); _, _ = srv.Write([]byte("b")) }()
	if _, err := sc.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if sc.misses.Load() != 1 {
		t.Fatalf("a read alone after the release did not spin: misses %d, want 1", sc.misses.Load())
	}
}

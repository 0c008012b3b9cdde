package herald_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// Issue 13 item 4: the first publish to a topic looks the topic up in Redis;
// while Redis does not answer, that lookup must be bounded by the publish
// timeout, not by the caller's context, which here has no deadline.
func TestPublishToUnloadedTopicHonoursTimeoutWhenRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Own(t, redisproc.Options{})
	c, err := herald.New(context.Background(), herald.Config{URL: srv.URL(), Namespace: redistest.Namespace(t),
		PublishTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Publish(context.Background(), "loaded", herald.Event{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	// SIGSTOP: the port still accepts connections (the kernel's backlog)
	// but nothing answers, as with a hung or partitioned server; a refused
	// connection would fail fast by itself.
	if err := syscall.Kill(srv.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(srv.Pid(), syscall.SIGCONT) })

	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := c.Publish(context.Background(), "never-loaded", herald.Event{Data: []byte("x")})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("publish to a new topic succeeded with Redis down")
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("publish failed after %s, want about the publish timeout (500ms): %v", took, err)
		}
		if !errors.Is(err, herald.ErrPublishTimeout) {
			t.Errorf("err = %v, want ErrPublishTimeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publish to a new topic still blocked 10s after Redis went down (publish timeout 500ms)")
	}
}

// Shutdown drains: an event being handled when Shutdown starts is handled
// to the end and acknowledged, and async publishes made before are sent.
func TestShutdownDrainsSubscriptionsAndPublishes(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	started, release := make(chan struct{}), make(chan struct{})
	sub, err := c.Subscribe(ctx, "orders", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		close(started)
		<-release
		return nil
	}), herald.BlockTime(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "orders", herald.Event{Data: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	<-started
	futures := make([]*herald.PublishFuture, 100)
	for i := range futures {
		futures[i] = c.PublishAsync(ctx, "other", herald.Event{Data: []byte("x")})
	}
	shut := make(chan error, 1)
	go func() { shut <- c.Shutdown(ctx) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a handler was still running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if st := sub.Stats(); st.Handled != 1 {
		t.Fatalf("handled = %d after Shutdown, want 1 (drained)", st.Handled)
	}
	for i, f := range futures {
		if _, err := f.Wait(ctx); err != nil {
			t.Fatalf("async event %d: %v", i, err)
		}
	}
	if _, err := c.Publish(ctx, "orders", herald.Event{}); !errors.Is(err, herald.ErrClosed) {
		t.Fatalf("Publish after Shutdown: err = %v, want ErrClosed", err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v, want nil", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close after Shutdown: %v, want nil", err)
	}
}

// A handler that does not return within the caller's deadline makes
// Shutdown return ctx's error at the deadline instead of waiting for it.
func TestShutdownReturnsContextErrorWhenDeadlinePasses(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	if _, err := c.Subscribe(ctx, "orders", "g", herald.HandlerFunc(func(context.Context, *herald.Message) error {
		close(started)
		<-release // ignores its context
		return nil
	}), herald.BlockTime(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "orders", herald.Event{Data: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	<-started
	sctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Shutdown(sctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Shutdown took %s with a 200ms deadline", took)
	}
	if _, err := c.Publish(ctx, "orders", herald.Event{}); !errors.Is(err, herald.ErrClosed) {
		t.Fatalf("Publish after Shutdown: err = %v, want ErrClosed", err)
	}
}

// Close is the quick form: a running handler is cancelled rather than
// waited for, and Close is idempotent.
func TestCloseStopsHandlersAndIsIdempotent(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	started := make(chan struct{})
	sub, err := c.Subscribe(ctx, "orders", "g", herald.HandlerFunc(func(hctx context.Context, m *herald.Message) error {
		close(started)
		<-hctx.Done() // returns only when cancelled
		return hctx.Err()
	}), herald.BlockTime(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "orders", herald.Event{Data: []byte("one")}); err != nil {
		t.Fatal(err)
	}
	<-started
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %s", took)
	}
	select {
	case <-sub.Done():
	default:
		t.Fatal("subscription still running after Close")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v, want nil", err)
	}
	if _, err := c.Subscribe(ctx, "orders", "g2", herald.HandlerFunc(func(context.Context, *herald.Message) error { return nil })); !errors.Is(err, herald.ErrClosed) {
		t.Fatalf("Subscribe after Close: err = %v, want ErrClosed", err)
	}
}

// New gives up when its context ends, instead of after a fixed bound: here
// the server accepts the connection and never answers.
func TestNewHonoursContext(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := herald.New(ctx, herald.Config{URL: "redis://" + ln.Addr().String()})
	if err == nil {
		c.Close()
		t.Fatal("New against a server that never answers succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("New took %s with a 300ms deadline: %v", took, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("New = %v, want DeadlineExceeded", err)
	}
}

// A SpinWait over MaxSpinWait is refused before anything is dialed, with
// an error that names the bound and the other settings.
func TestNewRefusesLongSpinWait(t *testing.T) {
	t.Parallel()
	c, err := herald.New(context.Background(), herald.Config{URL: "redis://127.0.0.1:1", SpinWait: 2 * time.Millisecond})
	if err == nil {
		c.Close()
		t.Fatal("New took a 2ms SpinWait")
	}
	if !errors.Is(err, herald.ErrInvalid) || !strings.Contains(err.Error(), "spin wait 2ms is over 1ms") || !strings.Contains(err.Error(), "negative value turns it off") {
		t.Fatalf("New = %v, want ErrInvalid naming the bound and the fix", err)
	}
}

// A reader blocked in a long read is interrupted when its subscription
// stops: the read runs on the reader's own connection without watching a
// context, so stopping must close that connection (rdb.ReadConn). Ordered
// and unordered, each read blocking up to a minute.
func TestStopInterruptsBlockedReads(t *testing.T) {
	t.Parallel()
	for _, unordered := range []bool{false, true} {
		c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got := make(chan struct{}, 16)
		opts := []herald.SubscribeOption{herald.BlockTime(time.Minute)}
		if unordered {
			opts = append(opts, herald.Unordered())
		}
		sub, err := c.Subscribe(context.Background(), "idle", "g", herald.HandlerFunc(func(context.Context, *herald.Message) error {
			got <- struct{}{}
			return nil
		}), opts...)
		if err != nil {
			t.Fatal(err)
		}
		// One event handled: the readers are reading, and then block.
		if _, err := c.Publish(context.Background(), "idle", herald.Event{Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("the event was not handled within 10 s")
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err = sub.Drain(ctx)
		cancel()
		if err != nil {
			t.Fatalf("unordered=%v: Drain: %v", unordered, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("unordered=%v: Drain took %v: the blocked reads were not interrupted", unordered, d)
		}
	}
}

package herald_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

func next(t *testing.T, l *herald.Listener, kind string) herald.ChannelMessage {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-l.Messages():
			if !ok {
				t.Fatal("listener closed")
			}
			if m.Kind == kind {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s within 10s", kind)
		}
	}
}

func TestListenerRuntimeSubscriptions(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	ns := c.Namespace()
	l, err := c.Listen(ctx, herald.ListenConfig{Channels: []string{ns + ":a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if n, err := c.Broadcast(ctx, ns+":a", []byte("1")); err != nil || n != 1 {
		t.Fatalf("broadcast = %d, %v", n, err)
	}
	if m := next(t, l, "message"); string(m.Data) != "1" || m.Channel != ns+":a" {
		t.Fatalf("got %+v", m)
	}
	if err := l.PSubscribe(ctx, ns+":b.*"); err != nil {
		t.Fatal(err)
	}
	next(t, l, "psubscribe")
	if err := l.Unsubscribe(ctx, ns+":a"); err != nil {
		t.Fatal(err)
	}
	next(t, l, "unsubscribe")
	if _, err := c.Broadcast(ctx, ns+":a", []byte("ignored")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Broadcast(ctx, ns+":b.x", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if m := next(t, l, "pmessage"); string(m.Data) != "2" || m.Pattern != ns+":b.*" {
		t.Fatalf("got %+v", m)
	}
	subs, err := c.NumSub(ctx, ns+":a")
	if err != nil || subs[ns+":a"] != 0 {
		t.Fatalf("numsub after unsubscribe = %v %v", subs, err)
	}
}

func TestListenerSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	srv, c := ownServerClient(t)
	var err error
	ctx := ctxT(t, 60*time.Second)
	gaps := make(chan herald.Gap, 4)
	l, err := c.Listen(ctx, herald.ListenConfig{Channels: []string{"news"}, OnGap: func(g herald.Gap) { gaps <- g }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var received atomic.Bool
	go func() {
		for m := range l.Messages() {
			if m.Kind == "message" && string(m.Data) == "after" {
				received.Store(true)
			}
		}
	}()
	waitFor(t, 30*time.Second, "a message published after the restart", func() bool {
		_, _ = c.Broadcast(ctx, "news", []byte("after")) // fails while the server restarts: keep trying
		// Not a condition: gives the broadcast time to arrive before the next try.
		time.Sleep(20 * time.Millisecond)
		return received.Load()
	})
	select {
	case g := <-gaps:
		if g.End.Before(g.Start) || g.Err == nil {
			t.Fatalf("gap = %+v", g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("gap not reported")
	}
	if l.Gaps() != 1 {
		t.Fatalf("Gaps() = %d, want 1", l.Gaps())
	}
}

func TestMonitorSeesNewTopics(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	evs, err := c.Monitor(ctx, herald.MonitorFilter{Topics: "late.*", SkipChannels: true})
	if err != nil {
		t.Fatal(err)
	}
	// The topic is created after the monitor started.
	pos, err := c.Publish(ctx, "late.topic", herald.Event{Type: "x", Data: []byte("abc")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "other", herald.Event{Data: []byte("not shown")}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-evs:
		if ev.Topic != "late.topic" || ev.Position != pos.ID || ev.Size != 3 || ev.Type != "x" {
			t.Fatalf("monitor event %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("monitor did not pick up the new topic")
	}
}

// Channels subscribed while the Listener reconnects (it has no connection)
// are subscribed on the new connection, and those unsubscribed meanwhile
// are not: the sets and the connection agree once it is back.
func TestListenerChangesDuringReconnect(t *testing.T) {
	t.Parallel()
	srv, c := ownServerClient(t)
	var err error
	ctx := ctxT(t, time.Minute)
	l, err := c.Listen(ctx, herald.ListenConfig{Channels: []string{"keep", "drop"}, Buffer: 1 << 14})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for range l.Messages() { // confirmations: read, so that they never fill the buffer
		}
	}()
	const n = 200
	names := make([]string, n)
	for round := range 3 {
		if _, err := redisproc.Command(srv.Addr(), time.Second, "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
			t.Fatal(err)
		}
		for i := range names {
			names[i] = fmt.Sprintf("r%d-%d", round, i)
			if err := l.Subscribe(ctx, names[i]); err != nil {
				t.Fatal(err)
			}
		}
		if round == 0 {
			if err := l.Unsubscribe(ctx, "drop"); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 20*time.Second, "every channel subscribed after the reconnect", func() bool {
			subs, err := c.NumSub(ctx, append([]string{"keep", "drop"}, names...)...)
			if err != nil || subs["keep"] != 1 || subs["drop"] != 0 {
				return false
			}
			for _, name := range names {
				if subs[name] != 1 {
					return false
				}
			}
			return true
		})
	}
}

// OnGap may close its Listener.
func TestListenerClosedFromOnGap(t *testing.T) {
	t.Parallel()
	srv, c := ownServerClient(t)
	var err error
	ctx := ctxT(t, time.Minute)
	var l *herald.Listener
	ready := make(chan struct{})
	l, err = c.Listen(ctx, herald.ListenConfig{Channels: []string{"news"}, OnGap: func(herald.Gap) {
		<-ready
		_ = l.Close()
	}})
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	if _, err := redisproc.Command(srv.Addr(), time.Second, "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("a Listener closed from OnGap did not stop")
	}
}

// ownServerClient starts a redis-server for one test (which may restart or
// kill its connections) and a client of it.
func ownServerClient(t *testing.T) (*redisproc.Server, *herald.Client) {
	t.Helper()
	srv := redistest.Own(t, redisproc.Options{})
	c, err := herald.New(context.Background(), herald.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

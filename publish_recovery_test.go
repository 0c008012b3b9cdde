package herald_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// stopServer pauses srv (SIGSTOP, by its pid) and returns the function that
// continues it; the test's end continues it too.
func stopServer(t *testing.T, srv *redisproc.Server) func() {
	t.Helper()
	pid := srv.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(cont)
	return cont
}

// A batch of one key given up while Redis stalled can still run when
// Redis comes back; a later batch of that key, acknowledged, must not be
// stored before it, whichever way each went (caller-set ids take the
// script on the shared connection, generated ones plain XADDs on the
// lane's own). Rounds: given up through the script then plain, and plain
// then the script.
func TestGivenUpBatchNeverLandsAfterALaterOne(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, firstID, secondID string }{
		{"script then plain", "A-id", ""},
		{"plain then script", "", "B-id"},
		{"plain then plain", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Own(t, redisproc.Options{})
			ctx := ctxT(t, time.Minute)
			c, err := herald.New(ctx, herald.Config{URL: srv.URL(), PublishTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Both ways warmed: the lane has its connection, the script is loaded.
			for _, id := range []string{"warm-id", ""} {
				if _, err := c.Publish(ctx, "t", herald.Event{Key: "k", ID: id, Data: []byte("warm")}); err != nil {
					t.Fatal(err)
				}
			}
			cont := stopServer(t, srv)
			if _, err := c.Publish(ctx, "t", herald.Event{Key: "k", ID: tc.firstID, Data: []byte("A")}); !errors.Is(err, herald.ErrPublishTimeout) {
				t.Fatalf("publish while Redis is stopped: %v, want ErrPublishTimeout", err)
			}
			go func() {
				time.Sleep(300 * time.Millisecond) // B is sent while Redis is still stopped
				cont()
			}()
			if _, err := c.Publish(ctx, "t", herald.Event{Key: "k", ID: tc.secondID, Data: []byte("B")}); err != nil {
				t.Fatalf("publish after Redis came back: %v", err)
			}
			// A may land late, or never; if it lands, it is before B.
			var order []string
			redistest.Poll(2*time.Second, func() bool {
				evs, err := c.Events(ctx, "t", herald.Query{Limit: 100})
				if err != nil {
					return false
				}
				order = order[:0]
				for _, e := range evs {
					order = append(order, string(e.Data))
				}
				return len(order) == 4
			})
			for i, d := range order {
				if d == "A" && i > 0 && order[i-1] == "B" {
					t.Fatalf("stream holds %q: the given-up A was stored after the acknowledged B", order)
				}
			}
		})
	}
}

// A replicated publish (WAIT, a blocking command) to a server that stalls
// returns by PublishTimeout, also when that is longer than the
// connections' own write timeout (10 s).
func TestReplicatedPublishToStalledServerEndsByPublishTimeout(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits 10 s")
	}
	srv := redistest.Own(t, redisproc.Options{})
	ctx := ctxT(t, time.Minute)
	c, err := herald.New(ctx, herald.Config{URL: srv.URL(), PublishTimeout: 10 * time.Second, ReplicationTimeout: 100 * time.Millisecond, AllowDegraded: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("warm")}, herald.WithDurability(herald.Replicated)); err != nil {
		t.Fatal(err)
	}
	stopServer(t, srv)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := c.Publish(ctx, "t", herald.Event{Data: []byte("x")}, herald.WithDurability(herald.Replicated))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, herald.ErrPublishTimeout) {
			t.Fatalf("publish to a stopped server: %v, want ErrPublishTimeout", err)
		}
		if took := time.Since(start); took < 9*time.Second {
			t.Fatalf("publish gave up after %v, before its PublishTimeout of 10s", took)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a replicated publish to a stopped server did not return within twice its PublishTimeout")
	}
}

package herald_test

import (
	"errors"
	"strconv"
	"strings"
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

// A slow script (400 ms) holds Redis (BUSY) while a big batch's pipelined
// XADDs arrive, at several moments of the script: Redis refuses what it
// reads during the script (a 3,000-XADD pipeline written at once was
// refused whole, or run whole once the script ended), and the refused
// attempt is fenced and sent again. Every publish succeeds and every event
// is stored exactly once.
func TestBatchThroughABusyScriptStoredOnce(t *testing.T) {
	t.Parallel()
	srv := redistest.Own(t, redisproc.Options{})
	ctx := ctxT(t, 2*time.Minute)
	if _, err := redisproc.Command(srv.Addr(), 5*time.Second, "CONFIG", "SET", "busy-reply-threshold", "10"); err != nil {
		t.Fatal(err)
	}
	c, err := herald.New(ctx, herald.Config{URL: srv.URL(), PublishTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const rounds, size = 6, 3000
	payload := make([]byte, 100)
	evs := make([]herald.Event, size)
	for i := range evs {
		evs[i] = herald.Event{Data: payload}
	}
	if _, err := c.PublishBatch(ctx, "t", evs[:1]); err != nil { // the lane's connection is up
		t.Fatal(err)
	}
	const busy = `local t0 = redis.call('TIME') local s = t0[1] * 1000000 + t0[2]
while true do local t = redis.call('TIME') if t[1] * 1000000 + t[2] - s > 400000 then break end end return 1`
	want := 1
	for r := range rounds {
		done := make(chan error, 1)
		go func() {
			_, err := redisproc.Command(srv.Addr(), 10*time.Second, "EVAL", busy, "0")
			done <- err
		}()
		waitFor(t, 5*time.Second, "the script to hold Redis", func() bool {
			_, err := redisproc.Command(srv.Addr(), time.Second, "PING")
			return err != nil && strings.Contains(err.Error(), "BUSY")
		})
		// At a later moment of the script each round.
		time.Sleep(time.Duration(r*30) * time.Millisecond)
		pos, err := c.PublishBatch(ctx, "t", evs)
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		want += size
		seen := map[herald.Position]bool{}
		for _, p := range pos {
			if p.ID == "" || seen[p] {
				t.Fatalf("round %d: position %+v missing or given twice", r, p)
			}
			seen[p] = true
		}
		ti, err := c.TopicInfo(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		stored := 0
		for _, p := range ti.Partitions {
			n, err := redisproc.Command(srv.Addr(), 5*time.Second, "XLEN", p.Stream)
			if err != nil {
				t.Fatal(err)
			}
			k, _ := strconv.Atoi(n)
			stored += k
		}
		if stored != want {
			t.Fatalf("round %d: %d events stored, want %d: every event once", r, stored, want)
		}
	}
}

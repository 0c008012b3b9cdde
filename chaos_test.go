//go:build chaos

// The chaos suite (issue 13): scenarios that kill and stall Redis under
// load, bounded in time, each checking that no acknowledged event is lost
// or stored twice. Run with the chaos build tag:
//
//	go test -tags chaos -count=1 -run TestChaos -timeout 30m .
//
// HERALD_CHAOS_KILLS (default 10) sets the master kills of the failover
// drill, HERALD_CHAOS_SECONDS (default 60) the length of the connection
// chaos; .ci/run runs a short form (2 kills, 5 s). docs/operations.md has
// the numbers of the long form.
package herald_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

func chaosEnv(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// TestChaosMasterKillsLaggingReplicas: the failover drill with
// HERALD_CHAOS_KILLS master kills, each with the victim's replica lagging.
func TestChaosMasterKillsLaggingReplicas(t *testing.T) {
	failoverDrill(t, chaosEnv(t, "HERALD_CHAOS_KILLS", 10), true)
}

// TestChaosConnectionKillsPausesAndSleeps: publishers (Publish, PublishBatch,
// PublishAsync, with and without caller-set ids) and one subscription run
// for HERALD_CHAOS_SECONDS while the client's connections are killed
// (CLIENT KILL), writes are paused (CLIENT PAUSE WRITE) and the server
// sleeps (DEBUG SLEEP), in turns. Every acknowledged event is stored once
// and consumed. It runs twice: with the default SpinWait, and with lanes
// and readers that spin for every reply (internal/rdb/spin.go), whatever
// the machine's cores, so that the spinning reads meet every failure too.
func TestChaosConnectionKillsPausesAndSleeps(t *testing.T) {
	seconds := chaosEnv(t, "HERALD_CHAOS_SECONDS", 60)
	t.Run("default", func(t *testing.T) { connectionChaos(t, seconds, 0) })
	t.Run("spin", func(t *testing.T) { connectionChaos(t, seconds, 200*time.Microsecond) })
}

func connectionChaos(t *testing.T, seconds int, spin time.Duration) {
	srv := redistest.Own(t, redisproc.Options{AppendOnly: true, Args: []string{"--enable-debug-command", "yes"}})
	c, err := herald.New(context.Background(), herald.Config{URL: srv.URL(), SpinWait: spin})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t, time.Duration(seconds)*time.Second+3*time.Minute)
	if err := c.CreateTopic(ctx, "chaos", herald.TopicConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	sub, err := c.Subscribe(ctx, "chaos", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		mu.Lock()
		seen[string(m.Data)]++
		mu.Unlock()
		return nil
	}), herald.VisibilityTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()

	// Chaos, in turns, every 100 ms.
	stop := make(chan struct{})
	var chaosWG sync.WaitGroup
	var kills, pauses, sleeps atomic.Int64
	chaosWG.Go(func() {
		for turn := 0; ; turn++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			switch turn % 6 {
			case 0, 2, 4:
				// The server is the test's own: every normal client but this
				// command's connection is Herald's.
				out, err := redisproc.Command(srv.Addr(), time.Second, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
				if n, _ := strconv.Atoi(strings.TrimSpace(out)); err == nil && n > 0 {
					kills.Add(int64(n))
				}
			case 1:
				if _, err := redisproc.Command(srv.Addr(), time.Second, "CLIENT", "PAUSE", "300", "WRITE"); err == nil {
					pauses.Add(1)
				}
			case 3:
				if _, err := redisproc.Command(srv.Addr(), 2*time.Second, "DEBUG", "SLEEP", "0.3"); err == nil {
					sleeps.Add(1)
				}
			}
		}
	})

	var acked sync.Map // data -> true
	var published, failed atomic.Int64
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var pubWG sync.WaitGroup
	for g := range 6 {
		pubWG.Go(func() {
			for r := 0; time.Now().Before(deadline); r++ {
				data := func(i int) string { return "c-" + strconv.Itoa(g) + "-" + strconv.Itoa(r) + "-" + strconv.Itoa(i) }
				switch g % 3 {
				case 0: // one event per call, half with caller-set ids
					ev := herald.Event{Data: []byte(data(0))}
					if r%2 == 1 {
						ev.ID = data(0)
					}
					if _, err := c.Publish(ctx, "chaos", ev); err != nil {
						failed.Add(1)
						continue
					}
					acked.Store(data(0), true)
					published.Add(1)
				case 1: // batches: plain, keyed
					evs := make([]herald.Event, 20)
					for i := range evs {
						evs[i] = herald.Event{Data: []byte(data(i))}
						if r%2 == 1 {
							evs[i].Key = "k" + strconv.Itoa(i%3)
						}
					}
					if _, err := c.PublishBatch(ctx, "chaos", evs); err != nil {
						failed.Add(1)
						continue
					}
					for i := range evs {
						acked.Store(data(i), true)
					}
					published.Add(int64(len(evs)))
				case 2: // async
					fs := make([]*herald.PublishFuture, 50)
					for i := range fs {
						fs[i] = c.PublishAsync(ctx, "chaos", herald.Event{Data: []byte(data(i))})
					}
					for i, f := range fs {
						if _, err := f.Wait(ctx); err != nil {
							failed.Add(1)
							continue
						}
						acked.Store(data(i), true)
						published.Add(1)
					}
				}
			}
		})
	}
	pubWG.Wait()
	close(stop)
	chaosWG.Wait()
	if kills.Load() == 0 || pauses.Load() == 0 || sleeps.Load() == 0 {
		t.Fatalf("chaos did not run: %d kills, %d pauses, %d sleeps", kills.Load(), pauses.Load(), sleeps.Load())
	}
	stored := map[string]int{}
	evs, err := c.Events(ctx, "chaos", herald.Query{Limit: 1 << 22})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		stored[string(e.Data)]++
	}
	twice, missing := 0, 0
	for d, n := range stored {
		if n > 1 {
			twice++
			if twice <= 5 {
				t.Errorf("event %s stored %d times", d, n)
			}
		}
	}
	acked.Range(func(k, _ any) bool {
		if stored[k.(string)] == 0 {
			missing++
		}
		return true
	})
	waitFor(t, 60*time.Second, "every stored event to be consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for d := range stored {
			if seen[d] == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("connection chaos for %ds: %d connection kills, %d write pauses, %d server sleeps; acknowledged %d events, "+
		"%d calls failed; stored %d, stored twice %d, acknowledged and missing %d; every stored event consumed",
		seconds, kills.Load(), pauses.Load(), sleeps.Load(), published.Load(), failed.Load(), len(stored), twice, missing)
	if twice > 0 || missing > 0 {
		t.Fatalf("%d events stored twice, %d acknowledged events missing", twice, missing)
	}
}

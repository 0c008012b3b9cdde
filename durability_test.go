package herald_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestReplicatedFailsWithoutReplicaUnlessDegradeAllowed (issue 13 item 7):
// a Replicated publish that no replica acknowledged fails with
// ErrNotReplicated, with an error that names the fix, unless the caller
// accepted degrading (per call or per client); then it says Degraded.
func TestReplicatedFailsWithoutReplicaUnlessDegradeAllowed(t *testing.T) {
	t.Parallel()
	master := redistest.Own(t, redisproc.Options{AppendOnly: true})
	ctx := ctxT(t, 30*time.Second)

	// No replica yet: the publish fails by default (the event is stored on the master).
	c, err := herald.New(context.Background(), herald.Config{URL: master.URL(), ReplicationTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Publish(ctx, "t", herald.Event{Data: []byte("a")}, herald.WithDurability(herald.Replicated))
	if !errors.Is(err, herald.ErrNotReplicated) || !strings.Contains(err.Error(), "replicaof") || !strings.Contains(err.Error(), "AllowDegraded") {
		t.Fatalf("without a replica: %v; want ErrNotReplicated naming the fix (replicaof, AllowDegraded)", err)
	}
	if _, err := c.PublishBatch(ctx, "t", []herald.Event{{Data: []byte("b")}, {Data: []byte("c")}}, herald.WithDurability(herald.Replicated)); !errors.Is(err, herald.ErrNotReplicated) {
		t.Fatalf("batch without a replica: %v, want ErrNotReplicated", err)
	}
	// Degrading asked for, per call: stored, reported as degraded.
	p, err := c.Publish(ctx, "t", herald.Event{Data: []byte("d")}, herald.WithDurability(herald.Replicated), herald.AllowDegraded())
	if err != nil || !p.Degraded || p.Replicas != 0 {
		t.Fatalf("per-call degrade: %+v, %v; want degraded with 0 replicas", p, err)
	}
	if c.Stats().DegradedPublishes != 3 {
		t.Fatalf("degraded counter = %d, want 3", c.Stats().DegradedPublishes)
	}
	// ... or per client.
	lax, err := herald.New(context.Background(), herald.Config{URL: master.URL(), ReplicationTimeout: 50 * time.Millisecond, AllowDegraded: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lax.Close()
	if p, err := lax.Publish(ctx, "t", herald.Event{Data: []byte("e")}, herald.WithDurability(herald.Replicated)); err != nil || !p.Degraded {
		t.Fatalf("client-wide degrade: %+v, %v; want degraded", p, err)
	}
	// Memory durability never waits.
	if p, err := c.Publish(ctx, "t", herald.Event{Data: []byte("c")}); err != nil || p.Degraded || p.Replicas != -1 {
		t.Fatalf("memory publish: %+v %v", p, err)
	}

	// With a linked replica, WAIT answers 1.
	replica := redistest.Own(t, redisproc.Options{Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port)}})
	waitFor(t, 10*time.Second, "the replica to link", func() bool {
		info, err := redisproc.Command(replica.Addr(), time.Second, "INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	// (A generous ReplicationTimeout: on a loaded machine, under -race, the
	// replica's first acknowledgements took more than 500 ms.)
	sure, err := herald.New(context.Background(), herald.Config{URL: master.URL(), ReplicationTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sure.Close()
	if err := sure.CreateTopic(ctx, "safe", herald.TopicConfig{Durability: herald.Replicated}); err != nil {
		t.Fatal(err)
	}
	p, err = sure.Publish(ctx, "safe", herald.Event{Data: []byte("f")})
	if err != nil || p.Degraded || p.Replicas != 1 {
		t.Fatalf("with a replica: %+v %v; want 1 replica", p, err)
	}
	if ti, _ := sure.TopicInfo(ctx, "safe"); ti.Config.Durability != herald.Replicated {
		t.Fatalf("topic durability = %v", ti.Config.Durability)
	}
}

// TestPublishRetriesThroughOutage (issue 13 item 10): the default publish
// timeout covers a failover with margin, and Publish retries inside the
// call: a publish sent while Redis is down for 3 s returns once it is back,
// stored once.
func TestPublishRetriesThroughOutage(t *testing.T) {
	t.Parallel()
	if herald.DefaultPublishTimeout < 30*time.Second {
		t.Fatalf("DefaultPublishTimeout %s is shorter than two failovers (cluster-node-timeout 15 s)", herald.DefaultPublishTimeout)
	}
	// fsync always: "before" is acknowledged, then Redis is SIGKILLed at
	// once; with everysec a busy disk postpones the write past the kill.
	srv := redistest.Own(t, redisproc.Options{AppendOnly: true, Args: []string{"--appendfsync", "always"}})
	ctx := ctxT(t, 60*time.Second)
	c, err := herald.New(context.Background(), herald.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	restarted := make(chan error, 1)
	time.AfterFunc(3*time.Second, func() { restarted <- srv.Restart(context.Background()) })
	start := time.Now()
	if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("during")}); err != nil {
		t.Fatalf("publish during a 3 s outage: %v (after %s)", err, time.Since(start))
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("the publish returned after %s, before Redis was back", d)
	}
	evs, err := c.Events(ctx, "t", herald.Query{})
	if err != nil || len(evs) != 2 || string(evs[1].Data) != "during" {
		t.Fatalf("stored %d events (%v), want before and during, once each", len(evs), err)
	}
}

// An atomic batch published with Replicated durability waits for the
// replicas like any other: with none to answer it is degraded, and refused
// unless degrading is allowed. (It used to return without a WAIT, as if
// every replica had it.)
func TestAtomicBatchReplicatedWaitsForReplicas(t *testing.T) {
	t.Parallel()
	c := newClient(t, func(cfg *herald.Config) { cfg.ReplicationTimeout = 50 * time.Millisecond })
	ctx := ctxT(t, 30*time.Second)
	if err := c.CreateTopic(ctx, "tx", herald.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	evs := []herald.Event{{Data: []byte("a")}, {Data: []byte("b")}}
	evs[0].Key, evs[1].Key = "k1", "k2" // two partitions
	for _, allow := range []bool{false, true} {
		o := []herald.PublishOption{herald.Atomic(), herald.WithDurability(herald.Replicated)}
		if allow {
			o = append(o, herald.AllowDegraded())
		}
		ps, err := c.PublishBatch(ctx, "tx", evs, o...)
		if allow != (err == nil) || (!allow && !errors.Is(err, herald.ErrNotReplicated)) {
			t.Fatalf("atomic replicated batch, AllowDegraded %v: %v, want ErrNotReplicated only without it", allow, err)
		}
		if len(ps) != 2 || !ps[0].Degraded || ps[0].Replicas != 0 || ps[0].ID == "" {
			t.Fatalf("positions %+v, want both stored, degraded, 0 replicas", ps)
		}
	}
}

package herald_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// startCluster starts a 3-master/3-replica cluster for one test; every node
// is killed (SIGKILL, by recorded pid) and the data removed at the end.
func startCluster(t *testing.T) *redisproc.Cluster {
	t.Helper()
	redistest.Skip(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := redisproc.StartCluster(ctx, redisproc.ClusterOptions{Masters: 3, Replicas: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, nd := range cl.Nodes {
			if cl.Running(nd) {
				cl.Kill(nd.Port)
			}
		}
		cl.Purge()
	})
	return cl
}

func masterOfPartitions(t *testing.T, c *herald.Client, topic string) map[string][]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ti, err := c.TopicInfo(ctx, topic)
	if err != nil {
		return nil // a node is down: the caller polls again
	}
	out := map[string][]int{}
	for _, p := range ti.Partitions {
		out[p.Node] = append(out[p.Node], p.Partition)
	}
	return out
}

func TestClusterBalancedPlacementAndAtomicRefusal(t *testing.T) {
	cl := startCluster(t)
	c, err := herald.New(context.Background(), herald.Config{URL: cl.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t, 30*time.Second)
	if err := c.CreateTopic(ctx, "orders", herald.TopicConfig{Partitions: 6}); err != nil {
		t.Fatal(err)
	}
	byNode := masterOfPartitions(t, c, "orders")
	if len(byNode) != 3 {
		t.Fatalf("6 partitions on %d masters, want 3: %v", len(byNode), byNode)
	}
	for n, ps := range byNode {
		if len(ps) != 2 {
			t.Fatalf("master %s holds partitions %v, want 2 of them", n, ps)
		}
	}
	// Publish and consume across the shards.
	got := make(chan string, 100)
	if _, err := c.Subscribe(ctx, "orders", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		select {
		case got <- string(m.Data):
		default: // the big batch below is not awaited here
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		if _, err := c.Publish(ctx, "orders", herald.Event{Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 12; i++ {
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatalf("consumed %d of 12 on the cluster", i)
		}
	}
	// A cross-partition atomic batch cannot be done in a cluster: refused, nothing written.
	_, err = c.PublishBatch(ctx, "orders", []herald.Event{{Key: "a", Data: []byte("x")}, {Key: "b", Data: []byte("y")}, {Key: "c", Data: []byte("z")}}, herald.Atomic())
	if err == nil {
		t.Fatal("cross-slot atomic batch accepted on a cluster")
	}
	if ti, _ := c.TopicInfo(ctx, "orders"); ti.Length != 12 {
		t.Fatalf("refused batch left events behind: %d stored", ti.Length)
	}
	// One key: one partition, one slot: atomic works.
	if _, err := c.PublishBatch(ctx, "orders", []herald.Event{{Key: "k", Data: []byte("1")}, {Key: "k", Data: []byte("2")}}, herald.Atomic()); err != nil {
		t.Fatal(err)
	}
	// Big batches of plain events go as transactions on a connection of
	// the lane's own, to the master of the partition's slot.
	for round := 0; round < 3; round++ {
		big := make([]herald.Event, 300)
		for i := range big {
			big[i] = herald.Event{Data: []byte("big")}
		}
		ps, err := c.PublishBatch(ctx, "orders", big)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, p := range ps {
			if p.ID == "" || seen[p.String()] {
				t.Fatalf("batch position %v empty or repeated", p)
			}
			seen[p.String()] = true
		}
	}
	if ti, _ := c.TopicInfo(ctx, "orders"); ti.Length != 12+2+900 {
		t.Fatalf("stored %d events, want %d", ti.Length, 12+2+900)
	}
}

// Publishers at ~2,000 events/s with durability replicated and a consumer
// group running; masters are killed with SIGKILL three times. Every event
// acknowledged to a publisher is consumed; duplicates are counted.
func TestClusterFailoverNothingAcknowledgedLost(t *testing.T) {
	if testing.Short() {
		t.Skip("failover drill: about a minute")
	}
	cl := startCluster(t)
	c, err := herald.New(context.Background(), herald.Config{URL: cl.URL(), PublishTimeout: 30 * time.Second, ReplicationTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, "payments", herald.TopicConfig{Partitions: 6, Durability: herald.Replicated}); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	seen := map[string]int{}
	_, err = c.Subscribe(ctx, "payments", "ledger", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		mu.Lock()
		seen[string(m.Data)]++
		mu.Unlock()
		return nil
	}), herald.VisibilityTimeout(3*time.Second), herald.BlockTime(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}

	// Offered load: 2,000 events/s, each publish in its own goroutine (at most
	// 2,000 in flight), so a publish stuck on a failing shard does not hold
	// back the others.
	var (
		acked, failed, degraded atomic.Int64
		ackedMu                 sync.Mutex
		ackedSet                = map[string]bool{}
		windowOpen              atomic.Bool
		inWindow                atomic.Int64
		pubWG                   sync.WaitGroup
	)
	stop := make(chan struct{})
	sem := make(chan struct{}, 2000)
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for i := 0; i < 2; i++ {
				n++
				data := "pay-" + strconv.Itoa(n)
				sem <- struct{}{}
				pubWG.Add(1)
				go func() {
					defer pubWG.Done()
					defer func() { <-sem }()
					p, err := c.Publish(ctx, "payments", herald.Event{Data: []byte(data)})
					if err != nil {
						failed.Add(1)
						return
					}
					acked.Add(1)
					if p.Degraded {
						degraded.Add(1)
					}
					if windowOpen.Load() {
						inWindow.Add(1)
					}
					ackedMu.Lock()
					ackedSet[data] = true
					ackedMu.Unlock()
				}()
			}
		}
	}()

	time.Sleep(time.Second) // steady state before the first kill
	for kill := 1; kill <= 3; kill++ {
		topo, err := cl.Topology()
		if err != nil {
			t.Fatal(err)
		}
		var victim int
		for _, n := range topo {
			if n.Master && len(n.Slots) > 0 {
				_, port, _ := net.SplitHostPort(n.Addr)
				victim, _ = strconv.Atoi(port)
				if kill%3 == 0 || victim%3 == kill%3 { // vary the victim
					break
				}
			}
		}
		victimAddr := fmt.Sprintf("127.0.0.1:%d", victim)
		parts := masterOfPartitions(t, c, "payments")[victimAddr]
		if len(parts) == 0 {
			t.Fatalf("no partition on master %s", victimAddr)
		}
		before := acked.Load()
		start := time.Now()
		windowOpen.Store(true)
		inWindow.Store(0)
		if _, err := cl.Kill(victim); err != nil {
			t.Fatal(err)
		}
		// Wait for a replica to take over the victim's slots.
		var newMaster string
		waitFor(t, 30*time.Second, "the promotion of a replica", func() bool {
			nodes := masterOfPartitions(t, c, "payments")
			for n, ps := range nodes {
				if n != victimAddr && len(ps) > 0 && containsAll(ps, parts) {
					newMaster = n
					return true
				}
			}
			return false
		})
		promoted := time.Since(start)
		// Publishing to the victim's partitions resumes.
		waitFor(t, 30*time.Second, "a publish to a promoted partition", func() bool {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := c.Publish(pctx, "payments", herald.Event{Data: []byte("probe-" + strconv.Itoa(kill))}, herald.ToPartition(parts[0]))
			return err == nil
		})
		windowOpen.Store(false)
		resumed := time.Since(start)
		t.Logf("kill %d: master %d (partitions %v) killed; %s promoted after %v; publishing resumed after %v; "+
			"%d publishes acknowledged during the window (keyless events kept flowing on healthy shards)",
			kill, victim, parts, newMaster, promoted.Round(time.Millisecond), resumed.Round(time.Millisecond), inWindow.Load())
		if inWindow.Load() == 0 {
			t.Errorf("kill %d: no keyless publish was accepted during the failover window", kill)
		}
		if acked.Load() <= before {
			t.Errorf("kill %d: nothing acknowledged since the kill", kill)
		}
		// The killed node comes back as a replica.
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		if err := cl.Restart(rctx, victim); err != nil {
			t.Fatal(err)
		}
		if err := cl.WaitNode(rctx, victim); err != nil {
			t.Fatal(err)
		}
		rcancel()
		time.Sleep(500 * time.Millisecond)
	}
	close(stop)
	pubWG.Wait()

	ackedMu.Lock()
	defer ackedMu.Unlock()
	waitFor(t, 90*time.Second, "every acknowledged event to be consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for d := range ackedSet {
			if seen[d] == 0 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	dups := 0
	for _, n := range seen {
		if n > 1 {
			dups += n - 1
		}
	}
	mu.Unlock()
	t.Logf("acknowledged %d, failed %d (not acknowledged: allowed to be lost), degraded (fewer replicas than asked) %d, "+
		"consumed all acknowledged: yes, duplicate deliveries %d", acked.Load(), failed.Load(), degraded.Load(), dups)
	if acked.Load() < 10000 {
		t.Fatalf("only %d events acknowledged: the load did not run", acked.Load())
	}
}

func containsAll(have, want []int) bool {
	set := map[int]bool{}
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}

package herald_test

import (
	"context"
	"fmt"
	"net"
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

// startCluster starts a 3-master/3-replica cluster for one test; every node
// is killed (SIGKILL, by recorded pid) and the data removed at the end.
func startCluster(t *testing.T) *redisproc.Cluster {
	t.Helper()
	return redistest.OwnCluster(t, redisproc.ClusterOptions{Masters: 3, Replicas: 1})
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
	t.Parallel()
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
	twoPerMaster := func(topic string) {
		t.Helper()
		byNode := masterOfPartitions(t, c, topic)
		if len(byNode) != 3 {
			t.Fatalf("%s: partitions on %d masters, want 3: %v", topic, len(byNode), byNode)
		}
		for n, ps := range byNode {
			if len(ps) != 2 {
				t.Fatalf("%s: master %s holds partitions %v, want 2 of them", topic, n, ps)
			}
		}
	}
	twoPerMaster("orders")
	// A topic created by a publish, without a partition count, spreads
	// over the masters too: 2 partitions on each.
	if _, err := c.Publish(ctx, "auto", herald.Event{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	twoPerMaster("auto")
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

// TestClusterFailoverNothingAcknowledgedLost (issue 13 item 12): the
// failover drill, three master kills, each with the victim's replica
// lagging (SIGSTOP before the kill, SIGCONT after). No event acknowledged
// without the degraded flag is missing from the streams at the end.
func TestClusterFailoverNothingAcknowledgedLost(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("failover drill: about a minute")
	}
	failoverDrill(t, 3, true)
}

// drillReport is what a failover drill counted.
type drillReport struct {
	Acknowledged, Degraded, Failed int64 // publishes: acknowledged (degraded among them), failed
	Stored                         int   // distinct published events in the streams at the end
	StoredTwice                    int   // events stored more than once (must be 0)
	Consumed                       int   // distinct events a consumer handled
	Duplicates                     int   // deliveries beyond the first
	MissingAcked                   int   // acknowledged, not degraded, not in the streams (must be 0)
	MissingDegraded                int   // acknowledged as degraded, not in the streams (allowed)
	LostAfterConsumed              int   // consumed, then gone from the streams (a lagging replica's loss)
}

// failoverDrill runs publishers at ~2,000 events/s with durability
// replicated (degraded publishes accepted and counted), one consumer group,
// and kills masters with SIGKILL; with lagging, the victim's replica is
// stopped (SIGSTOP) 300 ms before the kill and continued right after, so
// that it is promoted without the writes it missed. At the end it counts
// what is stored in the streams beside what was acknowledged and consumed.
func failoverDrill(t *testing.T, kills int, lagging bool) drillReport {
	cl := startCluster(t)
	c, err := herald.New(context.Background(), herald.Config{URL: cl.URL(), ReplicationTimeout: 200 * time.Millisecond, AllowDegraded: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(kills)*40*time.Second+3*time.Minute)
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
		ackedSet                = map[string]bool{} // data -> degraded
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
					ackedSet[data] = p.Degraded
					ackedMu.Unlock()
				}()
			}
		}
	}()

	time.Sleep(time.Second) // not a condition: a second of steady publishing before the first kill
	for kill := 1; kill <= kills; kill++ {
		topo, err := cl.Topology()
		if err != nil {
			t.Fatal(err)
		}
		var victim, replica int
		var victimID string
		for _, n := range topo {
			if n.Master && len(n.Slots) > 0 {
				_, port, _ := net.SplitHostPort(n.Addr)
				victim, _ = strconv.Atoi(port)
				victimID = n.ID
				if victim%3 == kill%3 { // vary the victim
					break
				}
			}
		}
		for _, n := range topo {
			if n.MasterID == victimID && !n.HasFlag("fail") {
				_, port, _ := net.SplitHostPort(n.Addr)
				replica, _ = strconv.Atoi(port)
			}
		}
		victimAddr := fmt.Sprintf("127.0.0.1:%d", victim)
		parts := masterOfPartitions(t, c, "payments")[victimAddr]
		if len(parts) == 0 {
			t.Fatalf("no partition on master %s", victimAddr)
		}
		if lagging && replica != 0 {
			// The replica falls behind: what the master takes from now on is
			// acknowledged as degraded (WAIT gets no answer) and lost with it.
			// Stopped, it would still find the master's later writes in its
			// socket buffer when continued; dropping its link on the master
			// makes them miss it for good.
			if err := cl.Pause(replica); err != nil {
				t.Fatal(err)
			}
			if _, err := redisproc.Command(victimAddr, time.Second, "CLIENT", "KILL", "TYPE", "replica"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // not a condition: half a second of writes the lagging replica misses
		}
		before := acked.Load()
		start := time.Now()
		windowOpen.Store(true)
		inWindow.Store(0)
		if _, err := cl.Kill(victim); err != nil {
			t.Fatal(err)
		}
		if lagging && replica != 0 {
			if err := cl.Resume(replica); err != nil {
				t.Fatal(err)
			}
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
		t.Logf("kill %d: master %d (partitions %v, replica %d lagging: %v) killed; %s promoted after %v; publishing resumed after %v; "+
			"%d publishes acknowledged during the window",
			kill, victim, parts, replica, lagging && replica != 0, newMaster, promoted.Round(time.Millisecond), resumed.Round(time.Millisecond), inWindow.Load())
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
		time.Sleep(500 * time.Millisecond) // not a condition: publishing goes on a while between kills
	}
	close(stop)
	pubWG.Wait()

	// What the streams hold at the end.
	stored := map[string]int{}
	for p := range 6 {
		evs, err := c.Events(ctx, "payments", herald.Query{Partitions: []int{p}, Limit: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if strings.HasPrefix(string(e.Data), "pay-") {
				stored[string(e.Data)]++
			}
		}
	}
	ackedMu.Lock()
	defer ackedMu.Unlock()
	// Every stored event is consumed (those lost from the streams cannot be).
	waitFor(t, 90*time.Second, "every stored event to be consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for d := range stored {
			if seen[d] == 0 {
				return false
			}
		}
		return true
	})
	r := drillReport{Acknowledged: acked.Load(), Degraded: degraded.Load(), Failed: failed.Load(), Stored: len(stored)}
	for _, n := range stored {
		if n > 1 {
			r.StoredTwice++
		}
	}
	mu.Lock()
	for d, n := range seen {
		if !strings.HasPrefix(d, "pay-") {
			continue
		}
		r.Consumed++
		r.Duplicates += n - 1
		if stored[d] == 0 {
			r.LostAfterConsumed++
		}
	}
	mu.Unlock()
	for d, deg := range ackedSet {
		if stored[d] == 0 {
			if deg {
				r.MissingDegraded++
			} else {
				r.MissingAcked++
				if r.MissingAcked <= 5 {
					t.Errorf("acknowledged (not degraded) event %s is not in the streams", d)
				}
			}
		}
	}
	t.Logf("drill, %d master kills (lagging replicas: %v): acknowledged %d (degraded %d), failed %d (not acknowledged: allowed to be lost); "+
		"stored %d (stored twice %d); consumed %d, duplicate deliveries %d; missing from the streams: acknowledged %d, degraded %d; "+
		"consumed and then lost %d",
		kills, lagging, r.Acknowledged, r.Degraded, r.Failed, r.Stored, r.StoredTwice, r.Consumed, r.Duplicates,
		r.MissingAcked, r.MissingDegraded, r.LostAfterConsumed)
	if r.MissingAcked > 0 {
		t.Errorf("%d acknowledged events (not degraded) are missing from the streams", r.MissingAcked)
	}
	if r.StoredTwice > 0 {
		t.Errorf("%d events stored twice", r.StoredTwice)
	}
	if r.Acknowledged < int64(kills)*500 {
		t.Fatalf("only %d events acknowledged: the load did not run", r.Acknowledged)
	}
	return r
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

package redisproc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

func nodeArgs(nd *ClusterNode, opts ClusterOptions) []string {
	a := []string{
		"--port", strconv.Itoa(nd.Port), "--bind", "127.0.0.1", "--dir", nd.Dir,
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10),
		"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
		"--repl-diskless-sync-delay", "0",
	}
	return append(a, opts.Args...)
}

// portFree reports whether a TCP port can be bound on 127.0.0.1 now.
func portFree(p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// pickPorts returns n client ports whose bus ports (10000 higher) are free
// too: base, base+1, ... or, for base 0, random ports in 12000-21999 (bus
// 22000-31999), below the kernel's ephemeral range so that outgoing
// connections do not take them.
func pickPorts(base, n int) ([]int, error) {
	if base != 0 {
		ports := make([]int, n)
		for i := range ports {
			p := base + i
			for _, q := range []int{p, p + busPortOffset} {
				if !portFree(q) {
					return nil, fmt.Errorf("redisproc: port %d is in use (%d nodes need ports %d-%d and bus ports %d-%d); choose another first port, or 0 for free ports",
						q, n, base, base+n-1, base+busPortOffset, base+n-1+busPortOffset)
				}
			}
			ports[i] = p
		}
		return ports, nil
	}
	ports := make([]int, 0, n)
	taken := map[int]bool{}
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, errors.New("redisproc: found no free pair of ports in 12000-31999; free some ports or give a first port")
		}
		p := 12000 + rand.IntN(10000)
		if taken[p] || !portFree(p) || !portFree(p+busPortOffset) {
			continue
		}
		taken[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// launchAll starts every node in parallel. With free ports, a node whose
// port was taken meanwhile moves to other ports.
func (c *Cluster) launchAll(ctx context.Context, free bool, opts ClusterOptions) error {
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, nd := range c.Nodes {
		wg.Go(func() {
			for try := 0; ; try++ {
				err := os.MkdirAll(nd.Dir, 0o755)
				if err == nil {
					err = c.launch(ctx, nd)
				}
				if err == nil || !free || try >= 3 || ctx.Err() != nil {
					errs[i] = err
					return
				}
				os.RemoveAll(nd.Dir)
				ps, perr := pickPorts(0, 1)
				if perr != nil {
					errs[i] = perr
					return
				}
				c.mu.Lock()
				nd.Port, nd.BusPort, nd.Dir = ps[0], ps[0]+busPortOffset, filepath.Join(c.Dir, strconv.Itoa(ps[0]))
				nd.Args = nodeArgs(nd, opts)
				c.mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// launch starts one node's process in its own session, output appended to
// its redis.log, and waits until it answers PING.
func (c *Cluster) launch(ctx context.Context, nd *ClusterNode) error {
	logPath := filepath.Join(nd.Dir, "redis.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("redisproc: node %d: open log: %w", nd.Port, err)
	}
	cmd := exec.Command("redis-server", nd.Args...)
	cmd.Dir = nd.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // own session: outlives us, no terminal signals
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("redisproc: node %d: start redis-server: %w", nd.Port, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // reap it if it ends while we run
	pid := cmd.Process.Pid
	c.mu.Lock()
	if c.children == nil {
		c.children = map[int]chan struct{}{}
	}
	c.children[pid] = exited
	nd.Pid = pid
	c.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redisproc: redis-server on port %d exited at start: %s", nd.Port, tailFile(logPath, 3))
		case <-ctx.Done():
			c.killPid(pid, nd.Port)
			return fmt.Errorf("redisproc: node %d: %w", nd.Port, ctx.Err())
		default:
		}
		if Ping(nd.Addr(), 200*time.Millisecond) == nil {
			// Make sure the server answering is this process, not another one
			// that took the port first (ours then exits): commands such as
			// the FLUSHALL of a new master must never reach a stranger.
			info, err := Command(nd.Addr(), cmdTimeout, "INFO", "server")
			if err == nil && rdb.ParseInfo(info)["process_id"] == strconv.Itoa(pid) {
				return nil
			}
			c.killPid(pid, nd.Port)
			return fmt.Errorf("redisproc: port %d answers, but not as redis-server pid %d (another process holds it); choose other ports", nd.Port, pid)
		}
		if time.Now().After(deadline) {
			c.killPid(pid, nd.Port)
			return fmt.Errorf("redisproc: redis-server on port %d did not answer PING within 10s: %s", nd.Port, tailFile(logPath, 3))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

const cmdTimeout = 2 * time.Second

// create joins the started nodes. The order is chosen so that nothing
// waits for gossip (which takes seconds to spread slots, roles and
// replication offsets) and the cluster bus links are churned once:
//
//  1. distinct config epochs, slots for the first Masters nodes;
//  2. each replica (replica k follows master k mod Masters) meets its master
//     and REPLICATEs it, and syncs;
//  3. FLUSHALL on every master (they are new and empty, and stay so): the
//     replication offsets leave 0, so CLUSTER SLOTS lists the replicas;
//  4. every pair of nodes meets; once all know all, every MEET is sent
//     again: a MEET from a known node carries its slots, master and offset
//     in its header, which the other side otherwise learns at its next
//     ping, up to node-timeout/2 later;
//  5. wait until the cluster is healthy and its links are settled.
func (c *Cluster) create(ctx context.Context) error {
	for i, nd := range c.Nodes {
		id, err := Command(nd.Addr(), cmdTimeout, "CLUSTER", "MYID")
		if err != nil {
			return fmt.Errorf("redisproc: node %d: CLUSTER MYID: %w", nd.Port, err)
		}
		c.mu.Lock()
		nd.ID = id
		c.mu.Unlock()
		if _, err := Command(nd.Addr(), cmdTimeout, "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1)); err != nil {
			return fmt.Errorf("redisproc: node %d: CLUSTER SET-CONFIG-EPOCH: %w", nd.Port, err)
		}
	}
	for i, r := range rdb.EvenSlotRanges(c.Masters) {
		if err := addSlots(c.Nodes[i].Addr(), r); err != nil {
			return fmt.Errorf("redisproc: node %d: assign slots %d-%d: %w", c.Nodes[i].Port, r.Start, r.End, err)
		}
	}
	var meets [][2]*ClusterNode // in the order sent; sent again in step 4
	met := map[[2]int]bool{}
	meet := func(a, b *ClusterNode) error {
		if met[[2]int{a.Port, b.Port}] || met[[2]int{b.Port, a.Port}] {
			return nil
		}
		met[[2]int{a.Port, b.Port}] = true
		meets = append(meets, [2]*ClusterNode{a, b})
		return clusterMeet(a, b)
	}
	replicas := c.Nodes[c.Masters:]
	masterOf := func(k int) *ClusterNode { return c.Nodes[k%c.Masters] }
	for k, nd := range replicas {
		if err := meet(nd, masterOf(k)); err != nil {
			return err
		}
	}
	for k, nd := range replicas {
		master := masterOf(k)
		// REPLICATE needs the replica to know its master (handshake done).
		err := poll(ctx, fmt.Sprintf("node %d to replicate node %d", nd.Port, master.Port), func() (bool, string) {
			if _, err := Command(nd.Addr(), cmdTimeout, "CLUSTER", "REPLICATE", master.ID); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		if err != nil {
			return err
		}
	}
	err := poll(ctx, "the replicas to sync", func() (bool, string) {
		for _, nd := range replicas {
			info, err := Command(nd.Addr(), cmdTimeout, "INFO", "replication")
			if err != nil {
				return false, fmt.Sprintf("replica %d: %v", nd.Port, err)
			}
			if st := rdb.ParseInfo(info)["master_link_status"]; st != "up" {
				return false, fmt.Sprintf("replica %d: master_link_status:%s", nd.Port, st)
			}
		}
		return true, ""
	})
	if err != nil {
		return err
	}
	if len(replicas) > 0 {
		// Keyless, so allowed before cluster_state:ok; the masters hold
		// nothing (StartCluster only uses empty node directories).
		for _, nd := range c.Nodes[:c.Masters] {
			if _, err := Command(nd.Addr(), cmdTimeout, "FLUSHALL"); err != nil {
				return fmt.Errorf("redisproc: node %d: FLUSHALL of the new master: %w", nd.Port, err)
			}
		}
		err = poll(ctx, "the replicas' offsets to move", func() (bool, string) {
			for _, nd := range replicas {
				info, err := Command(nd.Addr(), cmdTimeout, "INFO", "replication")
				if err != nil {
					return false, fmt.Sprintf("replica %d: %v", nd.Port, err)
				}
				if off := rdb.ParseInfo(info)["slave_repl_offset"]; off == "" || off == "0" {
					return false, fmt.Sprintf("replica %d: slave_repl_offset:%s", nd.Port, off)
				}
			}
			return true, ""
		})
		if err != nil {
			return err
		}
	}
	for i, a := range c.Nodes {
		for _, b := range c.Nodes[i+1:] {
			if err := meet(a, b); err != nil {
				return err
			}
		}
	}
	err = poll(ctx, "every node to know all nodes", func() (bool, string) {
		for _, nd := range c.Nodes {
			view, err := nodeView(nd.Addr())
			if err != nil {
				return false, fmt.Sprintf("node %d: %v", nd.Port, err)
			}
			if len(view) != len(c.Nodes) {
				return false, fmt.Sprintf("node %d knows %d of %d nodes", nd.Port, len(view), len(c.Nodes))
			}
			for _, v := range view {
				if v.HasFlag("handshake") || v.HasFlag("noaddr") {
					return false, fmt.Sprintf("node %d: %s is still in handshake", nd.Port, v.Addr)
				}
			}
		}
		return true, ""
	})
	if err != nil {
		return err
	}
	for _, m := range meets {
		if err := clusterMeet(m[0], m[1]); err != nil {
			return err
		}
	}
	return c.waitHealthy(ctx, true)
}

func clusterMeet(a, b *ClusterNode) error {
	if _, err := Command(a.Addr(), cmdTimeout, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(b.Port), strconv.Itoa(b.BusPort)); err != nil {
		return fmt.Errorf("redisproc: CLUSTER MEET %d -> %d: %w", a.Port, b.Port, err)
	}
	return nil
}

func addSlots(addr string, r rdb.SlotRange) error {
	_, err := Command(addr, cmdTimeout, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(r.Start), strconv.Itoa(r.End))
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unknown") {
		return err
	}
	// Redis before 7.0 has no ADDSLOTSRANGE: name every slot.
	args := []string{"CLUSTER", "ADDSLOTS"}
	for s := r.Start; s <= r.End; s++ {
		args = append(args, strconv.Itoa(s))
	}
	_, err = Command(addr, 10*time.Second, args...)
	return err
}

// poll calls f every 20 ms until it reports done or ctx ends; the error
// then says what was awaited and the last thing f reported.
func poll(ctx context.Context, what string, f func() (bool, string)) error {
	start := time.Now()
	for {
		ok, last := f()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redisproc: gave up waiting for %s after %s (%v); last: %s", what, time.Since(start).Round(time.Millisecond), ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func nodeView(addr string) ([]rdb.TopologyNode, error) {
	s, err := Command(addr, cmdTimeout, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	return rdb.ParseClusterNodes(s)
}

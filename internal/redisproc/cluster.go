package redisproc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A Redis Cluster started by this package is a set of redis-server
// processes, each in its own session (so they outlive the program that
// started them) with its output in <node dir>/redis.log. The cluster is made
// with CLUSTER SET-CONFIG-EPOCH, CLUSTER ADDSLOTSRANGE, CLUSTER MEET and
// CLUSTER REPLICATE (no redis-cli needed), and recorded in a state file,
// <dir>/cluster.json, with every node's port, pid, id, directory and
// arguments. Stop, Kill and Restart act on the recorded pids only, after
// checking in /proc that the pid is still a redis-server serving the node's
// port; they never signal anything else.

// Cluster defaults and limits.
const (
	DefaultClusterMasters = 3
	DefaultNodeTimeout    = 5 * time.Second
	// MaxClusterMasters and MaxClusterReplicas bound ClusterOptions.
	MaxClusterMasters  = 64
	MaxClusterReplicas = 8
	// ClusterStateFile is the name of the state file in a cluster's directory.
	ClusterStateFile = "cluster.json"
	// ClusterSlots is the number of hash slots of a Redis Cluster.
	ClusterSlots = 16384
	// busPortOffset is the distance from a node's port to its cluster bus
	// port (Redis' default, which works on every version).
	busPortOffset = 10000
)

// ErrNoCluster is returned by LoadCluster for a directory without a state file.
// It wraps os.ErrNotExist.
var ErrNoCluster = fmt.Errorf("redisproc: no cluster state file (%s): %w", ClusterStateFile, os.ErrNotExist)

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// Masters is the number of masters (default 3, at most MaxClusterMasters).
	Masters int
	// Replicas is the number of replicas per master (0: none).
	Replicas int
	// Port is the first client port: nodes get Port, Port+1, ... and cluster
	// bus ports 10000 higher. 0 picks free ports.
	Port int
	// Dir holds the state file and one data directory per node (required).
	Dir string
	// NodeTimeout is cluster-node-timeout (default 5s).
	NodeTimeout time.Duration
	// Args are extra redis-server arguments for every node.
	Args []string
}

// ClusterNode is one process of a Cluster, as recorded in the state file.
type ClusterNode struct {
	Port    int      `json:"port"`
	BusPort int      `json:"bus_port"`
	Pid     int      `json:"pid"` // 0 after a clean stop
	ID      string   `json:"id"`
	Dir     string   `json:"dir"`
	Args    []string `json:"args"` // redis-server arguments; Restart reuses them
}

// Addr is the node's host:port.
func (n *ClusterNode) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)) }

// Cluster is a Redis Cluster of processes started by this package, or
// loaded from the state file of one.
type Cluster struct {
	Dir         string         `json:"dir"`
	Masters     int            `json:"masters"`
	Replicas    int            `json:"replicas"`
	NodeTimeout time.Duration  `json:"node_timeout_ns"`
	Created     time.Time      `json:"created"`
	Nodes       []*ClusterNode `json:"nodes"`

	mu       sync.Mutex            // guards Nodes' pids, children and the state file
	children map[int]chan struct{} // pid -> closed when a child of this process exited (reaped)
}

// StartCluster starts Masters*(1+Replicas) redis-server processes on
// loopback ports, joins them into a cluster and waits until it is ready for
// clients and drills: every node reports cluster_state:ok and has its bus
// links to every other, every replica master_link_status:up, and every
// node's CLUSTER SLOTS lists every replica. The processes keep running
// after the calling program exits; Stop ends them.
// On failure every process it started is killed and the node directories
// are removed; the error carries the end of a node's log where it helps.
func StartCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	if !Installed() {
		return nil, ErrNotInstalled
	}
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, ClusterStateFile)); err == nil {
		return nil, fmt.Errorf("redisproc: %s already holds a cluster (%s); start it again with Cluster.Start, stop it, or use another directory", dir, ClusterStateFile)
	}
	n := opts.Masters * (1 + opts.Replicas)
	ports, err := pickPorts(opts.Port, n)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("redisproc: create cluster directory: %w", err)
	}
	c := &Cluster{Dir: dir, Masters: opts.Masters, Replicas: opts.Replicas, NodeTimeout: opts.NodeTimeout,
		Created: time.Now().UTC().Truncate(time.Second), children: map[int]chan struct{}{}}
	for _, p := range ports {
		nd := &ClusterNode{Port: p, BusPort: p + busPortOffset, Dir: filepath.Join(dir, strconv.Itoa(p))}
		if entries, _ := os.ReadDir(nd.Dir); len(entries) > 0 {
			return nil, fmt.Errorf("redisproc: %s is not empty (data or nodes.conf of an earlier node); remove it or use another directory", nd.Dir)
		}
		nd.Args = nodeArgs(nd, opts)
		c.Nodes = append(c.Nodes, nd)
	}
	fail := func(err error) (*Cluster, error) {
		c.destroy()
		return nil, err
	}
	if err := c.launchAll(ctx, opts.Port == 0, opts); err != nil {
		return fail(err)
	}
	// Record the pids at once: if this program dies while the cluster is
	// forming, the processes can still be found and stopped.
	if err := c.save(); err != nil {
		return fail(err)
	}
	if err := c.create(ctx); err != nil {
		return fail(err)
	}
	if err := c.save(); err != nil {
		return fail(err)
	}
	return c, nil
}

func (o *ClusterOptions) fill() error {
	if o.Masters == 0 {
		o.Masters = DefaultClusterMasters
	}
	if o.Masters < 1 || o.Masters > MaxClusterMasters {
		return fmt.Errorf("redisproc: %d masters out of range; use 1..%d", o.Masters, MaxClusterMasters)
	}
	if o.Replicas < 0 || o.Replicas > MaxClusterReplicas {
		return fmt.Errorf("redisproc: %d replicas per master out of range; use 0..%d", o.Replicas, MaxClusterReplicas)
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = DefaultNodeTimeout
	}
	if o.NodeTimeout < 100*time.Millisecond {
		return fmt.Errorf("redisproc: node timeout %s is too short; use at least 100ms", o.NodeTimeout)
	}
	if strings.TrimSpace(o.Dir) == "" {
		return errors.New("redisproc: a cluster needs a directory; set ClusterOptions.Dir")
	}
	n := o.Masters * (1 + o.Replicas)
	if o.Port < 0 || o.Port != 0 && (o.Port < 1024 || o.Port+n-1+busPortOffset > 65535) {
		return fmt.Errorf("redisproc: port %d out of range for %d nodes; use 1024..%d (bus ports are 10000 higher), or 0 for free ports",
			o.Port, n, 65535-busPortOffset-n+1)
	}
	return nil
}

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
	go func() { cmd.Wait(); close(exited) }() // reap it if it ends while we run
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
			if err == nil && ParseInfo(info)["process_id"] == strconv.Itoa(pid) {
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

// slotRanges splits the slots over masters the way redis-cli does
// (0-5460, 5461-10922, 10923-16383 for three).
func slotRanges(masters int) []SlotRange {
	per := float64(ClusterSlots) / float64(masters)
	out := make([]SlotRange, masters)
	first, cursor := 0, 0.0
	for i := range out {
		last := int(math.Round(cursor + per - 1))
		if last > ClusterSlots-1 || i == masters-1 {
			last = ClusterSlots - 1
		}
		if last < first {
			last = first
		}
		out[i] = SlotRange{Start: first, End: last}
		first, cursor = last+1, cursor+per
	}
	return out
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
	for i, r := range slotRanges(c.Masters) {
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
			if st := ParseInfo(info)["master_link_status"]; st != "up" {
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
				if off := ParseInfo(info)["slave_repl_offset"]; off == "" || off == "0" {
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

func addSlots(addr string, r SlotRange) error {
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

func nodeView(addr string) ([]TopologyNode, error) {
	s, err := Command(addr, cmdTimeout, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	return ParseClusterNodes(s)
}

// ParseInfo parses INFO-style "key:value" lines (INFO, CLUSTER INFO),
// skipping "# Section" headers.
func ParseInfo(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// WaitHealthy waits until every node answers, reports cluster_state:ok,
// sees every other node without failure flags, every replica's link to its
// master is up, and every node's CLUSTER SLOTS (what cluster clients read)
// lists every replica.
func (c *Cluster) WaitHealthy(ctx context.Context) error { return c.waitHealthy(ctx, false) }

// waitHealthy with roles also requires every node to see Masters masters
// holding slots and Masters*Replicas replicas (right after creation).
func (c *Cluster) waitHealthy(ctx context.Context, roles bool) error {
	nodes := c.snapshot()
	err := poll(ctx, "a healthy cluster", func() (bool, string) {
		for _, nd := range nodes {
			ci, err := Command(nd.Addr(), cmdTimeout, "CLUSTER", "INFO")
			if err != nil {
				return false, fmt.Sprintf("node %d: %v", nd.Port, err)
			}
			if st := ParseInfo(ci)["cluster_state"]; st != "ok" {
				return false, fmt.Sprintf("node %d: cluster_state:%s", nd.Port, st)
			}
			view, err := nodeView(nd.Addr())
			if err != nil {
				return false, fmt.Sprintf("node %d: %v", nd.Port, err)
			}
			if len(view) != len(nodes) {
				return false, fmt.Sprintf("node %d knows %d of %d nodes", nd.Port, len(view), len(nodes))
			}
			masters, replicas := 0, 0
			var me TopologyNode
			for _, v := range view {
				for _, f := range []string{"fail", "fail?", "handshake", "noaddr"} {
					if v.HasFlag(f) {
						return false, fmt.Sprintf("node %d sees %s as %s", nd.Port, v.Addr, f)
					}
				}
				if v.Master && len(v.Slots) > 0 {
					masters++
				}
				if !v.Master && v.MasterID != "" {
					replicas++
				}
				if v.Myself {
					me = v
				}
			}
			others := map[string]bool{}
			for _, v := range view {
				if !v.Myself {
					others[v.ID] = true
				}
			}
			if miss := linksMissing(nd.Addr(), others); miss != "" {
				return false, fmt.Sprintf("node %d: %s", nd.Port, miss)
			}
			if roles && (masters != c.Masters || replicas != c.Masters*c.Replicas) {
				return false, fmt.Sprintf("node %d sees %d masters and %d replicas", nd.Port, masters, replicas)
			}
			if !me.Master {
				info, err := Command(nd.Addr(), cmdTimeout, "INFO", "replication")
				if err != nil {
					return false, fmt.Sprintf("node %d: %v", nd.Port, err)
				}
				if st := ParseInfo(info)["master_link_status"]; st != "up" {
					return false, fmt.Sprintf("replica %d: master_link_status:%s", nd.Port, st)
				}
			}
		}
		return true, ""
	})
	if err != nil {
		return err
	}
	return c.announceReplicas(ctx)
}

// WaitNode waits until the node on port reports cluster_state:ok, when it
// is a replica master_link_status:up, every other running node sees it
// healthy in the same role (after Restart: the others clear its fail flag
// and learn whether it came back as a replica), and every running node's
// CLUSTER SLOTS lists every healthy replica.
func (c *Cluster) WaitNode(ctx context.Context, port int) error {
	nd, err := c.Node(port)
	if err != nil {
		return err
	}
	err = poll(ctx, fmt.Sprintf("node %d to rejoin", port), func() (bool, string) {
		ci, err := Command(nd.Addr(), cmdTimeout, "CLUSTER", "INFO")
		if err != nil {
			return false, err.Error()
		}
		if st := ParseInfo(ci)["cluster_state"]; st != "ok" {
			return false, "cluster_state:" + st
		}
		view, err := nodeView(nd.Addr())
		if err != nil {
			return false, err.Error()
		}
		var me TopologyNode
		for _, v := range view {
			if v.Myself {
				me = v
			}
		}
		if !me.Master {
			info, err := Command(nd.Addr(), cmdTimeout, "INFO", "replication")
			if err != nil {
				return false, err.Error()
			}
			if st := ParseInfo(info)["master_link_status"]; st != "up" {
				return false, "master_link_status:" + st
			}
		}
		others := map[string]bool{}
		for _, other := range c.snapshot() {
			if other.Port != port && ProcessMatches(other.Pid, other.Port) {
				others[other.ID] = true
			}
		}
		if miss := linksMissing(nd.Addr(), others); miss != "" {
			return false, miss
		}
		for _, other := range c.snapshot() {
			if other.Port == port || !ProcessMatches(other.Pid, other.Port) {
				continue
			}
			ov, err := nodeView(other.Addr())
			if err != nil {
				continue // not answering: it learns later
			}
			for _, v := range ov {
				if v.ID != me.ID {
					continue
				}
				if v.Failed() || v.HasFlag("handshake") {
					return false, fmt.Sprintf("node %d still sees it as %s", other.Port, strings.Join(v.Flags, ","))
				}
				if v.Master != me.Master {
					return false, fmt.Sprintf("node %d has not yet learned its role", other.Port)
				}
			}
		}
		return true, ""
	})
	if err != nil {
		return err
	}
	return c.announceReplicas(ctx)
}

// RunningURL is a redis:// URL naming the nodes whose process runs, or ""
// when none does: a seed that is down can fail a client's first command.
func (c *Cluster) RunningURL() string {
	var addrs []string
	for _, nd := range c.snapshot() {
		if ProcessMatches(nd.Pid, nd.Port) {
			addrs = append(addrs, nd.Addr())
		}
	}
	if len(addrs) == 0 {
		return ""
	}
	return "redis://" + strings.Join(addrs, ",")
}

// URL is a redis:// URL naming every node as a seed.
func (c *Cluster) URL() string {
	addrs := make([]string, 0, len(c.Nodes))
	for _, nd := range c.snapshot() {
		addrs = append(addrs, nd.Addr())
	}
	return "redis://" + strings.Join(addrs, ",")
}

// Node returns the recorded node on port.
func (c *Cluster) Node(port int) (*ClusterNode, error) {
	for _, nd := range c.Nodes {
		if nd.Port == port {
			return nd, nil
		}
	}
	return nil, fmt.Errorf("redisproc: no node on port %d in the cluster of %s (its ports: %s)", port, c.Dir, c.portList())
}

func (c *Cluster) portList() string {
	ps := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		ps[i] = strconv.Itoa(nd.Port)
	}
	return strings.Join(ps, ", ")
}

// snapshot copies the node records (pids change under the lock).
func (c *Cluster) snapshot() []ClusterNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ClusterNode, len(c.Nodes))
	for i, nd := range c.Nodes {
		out[i] = *nd
	}
	return out
}

// Running reports whether the node's recorded pid is a live redis-server
// serving its port.
func (c *Cluster) Running(nd *ClusterNode) bool {
	c.mu.Lock()
	pid := nd.Pid
	c.mu.Unlock()
	return ProcessMatches(pid, nd.Port)
}

// Topology returns CLUSTER NODES as seen by the first node that answers.
func (c *Cluster) Topology() ([]TopologyNode, error) {
	var last error
	for _, nd := range c.snapshot() {
		v, err := nodeView(nd.Addr())
		if err == nil {
			return v, nil
		}
		last = err
	}
	return nil, fmt.Errorf("redisproc: no node of the cluster in %s answers: %v", c.Dir, last)
}

// Kill sends SIGKILL to the node on port (a crash, for drills) and waits
// until the process is gone. It fails, signalling nothing, when the
// recorded pid is not a redis-server serving that port.
func (c *Cluster) Kill(port int) (pid int, err error) {
	nd, err := c.Node(port)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	pid = nd.Pid
	c.mu.Unlock()
	if !ProcessMatches(pid, port) {
		return pid, fmt.Errorf("redisproc: node %d is not running (recorded pid %d is not a redis-server on that port); nothing killed", port, pid)
	}
	if !c.killPid(pid, port) {
		return pid, fmt.Errorf("redisproc: node %d (pid %d) still runs 5s after SIGKILL", port, pid)
	}
	return pid, nil
}

// killPid SIGKILLs pid if it is a redis-server serving port, and waits up
// to 5 s for it to go. It reports whether the process is gone.
func (c *Cluster) killPid(pid, port int) bool {
	if !ProcessMatches(pid, port) {
		return true
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return c.waitGone(pid, port, 5*time.Second)
}

func (c *Cluster) waitGone(pid, port int, d time.Duration) bool {
	c.mu.Lock()
	exited := c.children[pid]
	c.mu.Unlock()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if exited != nil {
			select {
			case <-exited:
				return true
			default:
			}
		} else if !ProcessMatches(pid, port) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// Restart starts the node on port again with its recorded arguments and
// directory (its nodes.conf keeps its identity, its AOF its data), first
// killing it if it still runs, and records the new pid. It returns once
// the node answers PING; WaitNode waits for it to rejoin.
func (c *Cluster) Restart(ctx context.Context, port int) error {
	nd, err := c.Node(port)
	if err != nil {
		return err
	}
	c.mu.Lock()
	pid := nd.Pid
	c.mu.Unlock()
	if !c.killPid(pid, port) {
		return fmt.Errorf("redisproc: node %d (pid %d) still runs 5s after SIGKILL", port, pid)
	}
	for i := 0; ; i++ { // the port can linger briefly after a kill
		if err = c.launch(ctx, nd); err == nil || i >= 20 || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	return c.save()
}

// Start starts every node that is not running, with its recorded
// arguments, and waits for a healthy cluster: `herald cluster up` on a
// directory whose cluster was stopped brings it back with its data.
func (c *Cluster) Start(ctx context.Context) error {
	if !Installed() {
		return ErrNotInstalled
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, nd := range c.Nodes {
		if c.Running(nd) {
			continue
		}
		if !portFree(nd.Port) {
			return fmt.Errorf("redisproc: port %d of node %d is taken by another process; stop it, or remove %s and start a new cluster", nd.Port, nd.Port, c.Dir)
		}
		wg.Go(func() { errs[i] = c.launch(ctx, nd) })
	}
	wg.Wait()
	if err := c.save(); err != nil {
		return err
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.WaitHealthy(ctx)
}

// StoppedNode reports what Stop did to one node.
type StoppedNode struct {
	Port int    `json:"port"`
	Pid  int    `json:"pid"`
	Note string `json:"note"` // "stopped", "killed after SIGTERM timeout", "not running"
}

// Stop ends every running node: SIGTERM (a clean shutdown, AOF flushed) to
// all at once, repeated every 0.5 s while a node still runs, and SIGKILL to
// those still running after 15 s. Only recorded
// pids that are still redis-servers serving their node's port are
// signalled. The state file is kept (pids cleared) so Start can bring the
// cluster back; Purge removes the data.
func (c *Cluster) Stop(ctx context.Context) ([]StoppedNode, error) {
	nodes := c.snapshot()
	out := make([]StoppedNode, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		out[i] = StoppedNode{Port: nd.Port, Pid: nd.Pid, Note: "not running"}
		if !ProcessMatches(nd.Pid, nd.Port) {
			continue
		}
		wg.Go(func() {
			deadline := time.Now().Add(15 * time.Second)
			if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
				deadline = dl
			}
			// Redis drops a SIGTERM that arrives while it writes its first
			// AOF ("Writing initial AOF, can't exit", e.g. right after a
			// replica's full sync): repeat it until the process is gone.
			for time.Now().Before(deadline) {
				if !ProcessMatches(nd.Pid, nd.Port) {
					break
				}
				_ = syscall.Kill(nd.Pid, syscall.SIGTERM)
				if c.waitGone(nd.Pid, nd.Port, min(500*time.Millisecond, max(time.Until(deadline), 0))) {
					out[i].Note = "stopped"
					return
				}
			}
			if !ProcessMatches(nd.Pid, nd.Port) {
				out[i].Note = "stopped"
				return
			}
			if c.killPid(nd.Pid, nd.Port) {
				out[i].Note = "killed after SIGTERM timeout"
				return
			}
			errs[i] = fmt.Errorf("redisproc: node %d (pid %d) survived SIGTERM and SIGKILL", nd.Port, nd.Pid)
		})
	}
	wg.Wait()
	c.mu.Lock()
	for i, nd := range c.Nodes {
		if errs[i] == nil {
			nd.Pid = 0
		}
	}
	c.mu.Unlock()
	if err := c.save(); err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// Purge removes the cluster's data: every node directory, the state file,
// and the cluster directory when nothing else is left in it. It refuses
// while a node still runs.
func (c *Cluster) Purge() error {
	for _, nd := range c.Nodes {
		if c.Running(nd) {
			return fmt.Errorf("redisproc: node %d still runs (pid %d); stop the cluster before removing its data", nd.Port, nd.Pid)
		}
	}
	for _, nd := range c.Nodes {
		if filepath.Dir(nd.Dir) != c.Dir { // only directories this package made
			continue
		}
		if err := os.RemoveAll(nd.Dir); err != nil {
			return err
		}
	}
	if err := os.Remove(filepath.Join(c.Dir, ClusterStateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(c.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		if entries, _ := os.ReadDir(c.Dir); len(entries) > 0 {
			return nil // other files live there: leave them and the directory
		}
		return err
	}
	return nil
}

// destroy kills what a failed StartCluster started and removes its files.
func (c *Cluster) destroy() {
	for _, nd := range c.snapshot() {
		c.killPid(nd.Pid, nd.Port)
	}
	c.mu.Lock()
	for _, nd := range c.Nodes {
		nd.Pid = 0
	}
	c.mu.Unlock()
	c.Purge()
}

// save writes the state file atomically.
func (c *Cluster) save() error {
	c.mu.Lock()
	b, err := json.MarshalIndent(c, "", "  ")
	c.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.Dir, ClusterStateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("redisproc: write cluster state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(c.Dir, ClusterStateFile))
}

// LoadCluster reads the state file of a cluster in dir. A missing file
// gives an error wrapping ErrNoCluster (and os.ErrNotExist).
func LoadCluster(dir string) (*Cluster, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(abs, ClusterStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoCluster, abs)
	}
	if err != nil {
		return nil, err
	}
	c := &Cluster{children: map[int]chan struct{}{}}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("redisproc: %s is not a cluster state file: %v; remove %s if it is stale", filepath.Join(abs, ClusterStateFile), err, abs)
	}
	if len(c.Nodes) == 0 {
		return nil, fmt.Errorf("redisproc: %s lists no nodes; remove %s if it is stale", filepath.Join(abs, ClusterStateFile), abs)
	}
	c.Dir = abs // the directory may have been moved
	return c, nil
}

// ProcessMatches reports whether pid is a live (not zombie) redis-server
// process serving port, judged by /proc/PID/cmdline: redis-server's process
// title "redis-server 127.0.0.1:PORT [cluster]", or its original arguments.
// It is false wherever /proc is missing, so nothing is ever signalled there.
func ProcessMatches(pid, port int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(b, []byte("redis-server")) {
		return false // gone, a zombie (empty cmdline), or some other program
	}
	ps := strconv.Itoa(port)
	for _, tok := range strings.FieldsFunc(string(b), func(r rune) bool { return r == 0 || r == ' ' }) {
		if tok == ps || strings.HasSuffix(tok, ":"+ps) {
			return true
		}
	}
	return false
}

// SlotRange is a range of hash slots, both ends included.
type SlotRange struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// TopologyNode is one line of CLUSTER NODES.
type TopologyNode struct {
	ID          string      `json:"id"`
	Addr        string      `json:"addr"` // host:port ("" for a node without address)
	Flags       []string    `json:"flags"`
	Myself      bool        `json:"myself"`
	Master      bool        `json:"master"`
	MasterID    string      `json:"master_id,omitempty"` // a replica's master
	PingSent    int64       `json:"ping_sent"`
	PongRecv    int64       `json:"pong_recv"`
	ConfigEpoch int64       `json:"config_epoch"`
	Connected   bool        `json:"connected"` // the cluster bus link
	Slots       []SlotRange `json:"slots,omitempty"`
}

// HasFlag reports whether the node carries flag (e.g. "fail", "fail?").
func (n TopologyNode) HasFlag(flag string) bool {
	for _, f := range n.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// Failed reports a node flagged fail or fail? (possibly failing).
func (n TopologyNode) Failed() bool { return n.HasFlag("fail") || n.HasFlag("fail?") }

// SlotCount is the number of slots the node serves.
func (n TopologyNode) SlotCount() int {
	total := 0
	for _, r := range n.Slots {
		total += r.End - r.Start + 1
	}
	return total
}

// FormatSlots writes ranges as "0-5460,5462": "-" when there are none.
func FormatSlots(rs []SlotRange) string {
	if len(rs) == 0 {
		return "-"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r.Start == r.End {
			parts[i] = strconv.Itoa(r.Start)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.Start, r.End)
		}
	}
	return strings.Join(parts, ",")
}

// ParseClusterNodes parses the reply of CLUSTER NODES:
// <id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv>
// <config-epoch> <link-state> <slot> ... Slots being imported or migrated
// ("[...]") are skipped. Nodes come out sorted by address.
func ParseClusterNodes(s string) ([]TopologyNode, error) {
	var out []TopologyNode
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("redisproc: CLUSTER NODES line %q has %d fields, want at least 8", line, len(f))
		}
		n := TopologyNode{ID: f[0], Flags: strings.Split(f[2], ","), Connected: f[7] == "connected"}
		addr, _, _ := strings.Cut(f[1], "@")
		addr, _, _ = strings.Cut(addr, ",")
		if i := strings.LastIndex(addr, ":"); i > 0 && addr[:i] != "" {
			n.Addr = net.JoinHostPort(strings.Trim(addr[:i], "[]"), addr[i+1:])
		}
		n.Myself = n.HasFlag("myself")
		n.Master = n.HasFlag("master")
		if f[3] != "-" {
			n.MasterID = f[3]
		}
		var err error
		if n.PingSent, err = strconv.ParseInt(f[4], 10, 64); err == nil {
			if n.PongRecv, err = strconv.ParseInt(f[5], 10, 64); err == nil {
				n.ConfigEpoch, err = strconv.ParseInt(f[6], 10, 64)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("redisproc: CLUSTER NODES line %q: %v", line, err)
		}
		for _, sl := range f[8:] {
			if strings.HasPrefix(sl, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(sl, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || a < 0 || b < a || b >= ClusterSlots {
				return nil, fmt.Errorf("redisproc: CLUSTER NODES line %q: bad slot %q", line, sl)
			}
			n.Slots = append(n.Slots, SlotRange{Start: a, End: b})
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return addrLess(out[i].Addr, out[j].Addr) })
	return out, nil
}

// addrLess orders host:port addresses by host, then numerically by port.
func addrLess(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if ha != hb {
		return ha < hb
	}
	na, _ := strconv.Atoi(pa)
	nb, _ := strconv.Atoi(pb)
	return na < nb
}

// query sends one command over a fresh connection and returns the whole
// reply: string, int64, nil or []any (for the array replies that Command
// cuts to their first line, such as CLUSTER SLOTS).
func query(addr string, timeout time.Duration, args ...string) (any, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(c))
}

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, errors.New("redisproc: empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, errors.New(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("redisproc: unexpected reply %q", line)
}

// slotsReplicas returns the ids of the replicas that CLUSTER SLOTS on addr
// lists: what cluster clients (rueidis, go-redis) learn the topology from.
func slotsReplicas(addr string) (map[string]bool, error) {
	v, err := query(addr, cmdTimeout, "CLUSTER", "SLOTS")
	if err != nil {
		return nil, err
	}
	ranges, _ := v.([]any)
	ids := map[string]bool{}
	for _, rg := range ranges {
		a, _ := rg.([]any)
		for i := 3; i < len(a); i++ { // start, end, master, replicas...
			if node, ok := a[i].([]any); ok && len(node) > 2 {
				if id, ok := node[2].(string); ok {
					ids[id] = true
				}
			}
		}
	}
	return ids, nil
}

// linksMissing says which cluster bus link addr lacks: a node sends over
// its own outgoing link to each other node, and one without it cannot
// reach that node (a replica without its link to its master refuses CLUSTER
// FAILOVER; a failover election without links gets no votes). Links are
// dropped and re-made for a moment after a MEET between known nodes. It is
// "" when addr has a link to every node in ids; also on Redis before 7.0,
// which has no CLUSTER LINKS.
func linksMissing(addr string, ids map[string]bool) string {
	v, err := query(addr, cmdTimeout, "CLUSTER", "LINKS")
	if err != nil {
		if strings.Contains(strings.ToLower(err.Error()), "unknown") {
			return ""
		}
		return err.Error()
	}
	links, _ := v.([]any)
	have := map[string]bool{}
	for _, l := range links {
		f, _ := l.([]any)
		var dir, node string
		for i := 0; i+1 < len(f); i += 2 {
			k, _ := f[i].(string)
			val, _ := f[i+1].(string)
			switch k {
			case "direction":
				dir = val
			case "node":
				node = val
			}
		}
		have[dir+" "+node] = true
	}
	for id := range ids {
		if !have["to "+id] {
			return fmt.Sprintf("no link to %.8s", id)
		}
	}
	return ""
}

// announceReplicas waits until every node's CLUSTER SLOTS lists every
// healthy replica and every node has its bus links to every other. Redis
// leaves out a replica whose replication offset is 0, as it is after a full
// sync until the master's first write, or its replication ping every
// repl-ping-replica-period (10 s): on an idle cluster, clients would see no
// replica for about 10 s. So when one is missing, every master gets a write
// (SET and DEL of a probe key in its slots: no data is left), and the
// replicas' pings carry the new offsets within about a second.
func (c *Cluster) announceReplicas(ctx context.Context) error {
	view, err := c.Topology()
	if err != nil {
		return err
	}
	want := map[string]string{} // replica id -> addr
	for _, v := range view {
		if !v.Master && v.MasterID != "" && !v.Failed() {
			want[v.ID] = v.Addr
		}
	}
	running := func() []ClusterNode {
		var out []ClusterNode
		for _, nd := range c.snapshot() {
			if ProcessMatches(nd.Pid, nd.Port) {
				out = append(out, nd)
			}
		}
		return out
	}
	complete := func() (bool, string) {
		nodes := running()
		for _, nd := range nodes {
			others := map[string]bool{}
			for _, o := range nodes {
				if o.ID != nd.ID {
					others[o.ID] = true
				}
			}
			if miss := linksMissing(nd.Addr(), others); miss != "" {
				return false, fmt.Sprintf("node %d: %s", nd.Port, miss)
			}
			ids, err := slotsReplicas(nd.Addr())
			if err != nil {
				return false, fmt.Sprintf("node %d: CLUSTER SLOTS: %v", nd.Port, err)
			}
			for id, addr := range want {
				if !ids[id] {
					return false, fmt.Sprintf("CLUSTER SLOTS of node %d does not list replica %s yet", nd.Port, addr)
				}
			}
		}
		return true, ""
	}
	if ok, _ := complete(); ok || len(want) == 0 {
		return nil
	}
	for _, v := range view {
		if !v.Master || len(v.Slots) == 0 || v.Failed() {
			continue
		}
		key := probeKey(v.Slots[0])
		if _, err := Command(v.Addr, cmdTimeout, "SET", key, "1"); err != nil {
			return fmt.Errorf("redisproc: write a probe key on master %s: %w", v.Addr, err)
		}
		if _, err := Command(v.Addr, cmdTimeout, "DEL", key); err != nil {
			return fmt.Errorf("redisproc: delete the probe key on master %s: %w", v.Addr, err)
		}
	}
	err = poll(ctx, "the replicas to receive the probe write", func() (bool, string) {
		for _, addr := range want {
			info, err := Command(addr, cmdTimeout, "INFO", "replication")
			if err != nil {
				continue // down: it cannot be listed anyway
			}
			if off := ParseInfo(info)["slave_repl_offset"]; off == "" || off == "0" {
				return false, fmt.Sprintf("replica %s: slave_repl_offset:%s", addr, off)
			}
		}
		return true, ""
	})
	if err != nil {
		return err
	}
	return poll(ctx, "every node's CLUSTER SLOTS to list every replica", complete)
}

// probeKey returns a key that hashes into r.
func probeKey(r SlotRange) string {
	for i := 0; ; i++ {
		k := "herald:cluster:probe:{" + strconv.Itoa(i) + "}"
		if s := KeySlot(k); s >= r.Start && s <= r.End {
			return k
		}
	}
}

// KeySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of the key,
// or of its hash tag (the text between the first "{" and the next "}" when
// not empty), modulo 16384.
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % ClusterSlots
}

package redisproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
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
	ClusterSlots = rdb.ClusterSlots
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
func (c *Cluster) Topology() ([]rdb.TopologyNode, error) {
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

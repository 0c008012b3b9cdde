package rdb

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// NodeReport is what one Redis node says about itself: INFO, selected
// CONFIG parameters and, on a cluster, CLUSTER INFO and its view of
// CLUSTER NODES. It feeds `herald cluster status` and `herald doctor`.
type NodeReport struct {
	Addr string
	// Err is set when the node could not be asked at all (down, refused).
	Err error
	// Info holds every INFO field (server, memory, persistence, replication, cluster...).
	Info map[string]string
	// Config holds the CONFIG GET parameters asked for; ConfigErr is set
	// when CONFIG is refused (managed services often rename or disable it).
	Config    map[string]string
	ConfigErr error
	// ClusterInfo and Topology are set on cluster nodes.
	ClusterInfo map[string]string
	Topology    []TopologyNode
}

// Survey asks every node the client knows (every master and replica of a
// cluster, or the one server) for a NodeReport, in parallel, each bounded
// by 3 s. Reports come sorted by address.
func (db *DB) Survey(ctx context.Context, config ...string) []NodeReport {
	nodes := db.nodes()
	addrs := make([]string, 0, len(nodes))
	for a := range nodes {
		addrs = append(addrs, a)
	}
	return db.SurveyAddrs(ctx, addrs, config...)
}

// SurveyAddrs is Survey for the nodes at addrs (host:port), including nodes
// the cluster client does not route to (a master without slots, a failed
// replica), which it reaches over a connection of their own.
func (db *DB) SurveyAddrs(ctx context.Context, addrs []string, config ...string) []NodeReport {
	addrs = append([]string(nil), addrs...)
	sort.Strings(addrs)
	out := make([]NodeReport, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			c, done, err := db.nodeClient(a)
			if err != nil {
				out[i] = NodeReport{Addr: a, Err: err}
				return
			}
			defer done()
			out[i] = surveyNode(ctx, a, c, config)
		})
	}
	wg.Wait()
	return out
}

func surveyNode(ctx context.Context, addr string, c rueidis.Client, config []string) NodeReport {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	r := NodeReport{Addr: addr}
	s, err := textReply(c.Do(ctx, c.B().Info().Build()))
	if err != nil {
		r.Err = err
		return r
	}
	r.Info = ParseInfo(s)
	r.Config = map[string]string{}
	for _, p := range config { // one parameter per call: Redis before 7.0 takes only one
		m, err := c.Do(ctx, c.B().ConfigGet().Parameter(p).Build()).AsStrMap()
		if err != nil {
			r.ConfigErr = err
			break
		}
		for k, v := range m {
			r.Config[k] = v
		}
	}
	if r.Info["cluster_enabled"] != "1" {
		return r
	}
	ci, err := textReply(c.Do(ctx, c.B().ClusterInfo().Build()))
	if err != nil {
		r.Err = err
		return r
	}
	r.ClusterInfo = ParseInfo(ci)
	if r.Topology, err = nodeTopology(ctx, c); err != nil {
		r.Err = err
	}
	return r
}

func nodeTopology(ctx context.Context, c rueidis.Client) ([]TopologyNode, error) {
	s, err := textReply(c.Do(ctx, c.B().ClusterNodes().Build()))
	if err != nil {
		return nil, err
	}
	return ParseClusterNodes(s)
}

// textReply reads the text of INFO, CLUSTER INFO or CLUSTER NODES. Over
// RESP3 they are verbatim strings, which rueidis returns with their format
// prefix ("txt:") still on.
func textReply(r rueidis.RedisResult) (string, error) {
	s, err := r.ToString()
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(s, "txt:"), nil
}

// nodeClient returns a client of the node at addr: the cluster client's
// connection when it routes to that node, else a connection of its own,
// closed by done.
func (db *DB) nodeClient(addr string) (c rueidis.Client, done func(), err error) {
	if n, ok := db.nodes()[addr]; ok {
		return n, func() {}, nil
	}
	if len(db.opt.InitAddress) == 0 {
		return nil, nil, fmt.Errorf("node %s is not among the client's nodes", addr)
	}
	opt := db.opt
	opt.InitAddress = []string{addr}
	opt.ForceSingleClient = true
	opt.Dialer.Timeout = 3 * time.Second
	c, err = rueidis.NewClient(opt)
	if err != nil {
		return nil, nil, err
	}
	return c, c.Close, nil
}

// NodeTopology returns CLUSTER NODES as seen by the node at addr.
func (db *DB) NodeTopology(ctx context.Context, addr string) ([]TopologyNode, error) {
	n, done, err := db.nodeClient(addr)
	if err != nil {
		return nil, err
	}
	defer done()
	return nodeTopology(ctx, n)
}

// ClusterFailover sends CLUSTER FAILOVER to the replica at addr: a
// coordinated switch with its master, or with force a takeover without the
// master's agreement (when the master is down).
func (db *DB) ClusterFailover(ctx context.Context, addr string, force bool) error {
	n, done, err := db.nodeClient(addr)
	if err != nil {
		return err
	}
	defer done()
	cmd := n.B().ClusterFailover().Build()
	if force {
		cmd = n.B().ClusterFailover().Force().Build()
	}
	return n.Do(ctx, cmd).Error()
}

// ClusterView is a cluster as a survey shows it: the topology as one node
// sees it (a master's view when a master answered), the overall state, and
// every node's report by address. `herald cluster status` and `herald
// doctor` both read the cluster through it.
type ClusterView struct {
	// State is "ok" when every node that answered says cluster_state:ok,
	// else the state of one that does not.
	State string
	// SlotsAssigned is cluster_slots_assigned of the node whose view was taken.
	SlotsAssigned int
	// Nodes is CLUSTER NODES of the chosen node, sorted by address; nil when
	// no node answered it.
	Nodes []TopologyNode
	// Reports holds every report by address.
	Reports map[string]NodeReport
}

// ViewOf builds the ClusterView of reports (from Survey or SurveyAddrs);
// more reports can be merged in with Add.
func ViewOf(reports []NodeReport) ClusterView {
	v := ClusterView{State: "ok", Reports: map[string]NodeReport{}}
	fromMaster := false
	for _, r := range reports {
		v.Add(r)
		if r.Err != nil || len(r.Topology) == 0 {
			continue
		}
		if v.Nodes == nil || !fromMaster && r.Info["role"] == "master" {
			v.Nodes, fromMaster = r.Topology, r.Info["role"] == "master"
			v.SlotsAssigned, _ = strconv.Atoi(r.ClusterInfo["cluster_slots_assigned"])
		}
	}
	return v
}

// Add records one more report (a node the view names that the client does
// not route to), updating State.
func (v *ClusterView) Add(r NodeReport) {
	v.Reports[r.Addr] = r
	if r.Err == nil && r.ClusterInfo != nil {
		if s := r.ClusterInfo["cluster_state"]; s != "ok" {
			v.State = s
		}
	}
}

// Unasked lists the addresses of nodes in the view that have no report yet.
func (v *ClusterView) Unasked() []string {
	var out []string
	for _, n := range v.Nodes {
		if _, ok := v.Reports[n.Addr]; !ok && n.Addr != "" {
			out = append(out, n.Addr)
		}
	}
	return out
}

// AddrOfID maps node ids to addresses in the view.
func (v *ClusterView) AddrOfID() map[string]string {
	out := make(map[string]string, len(v.Nodes))
	for _, n := range v.Nodes {
		out[n.ID] = n.Addr
	}
	return out
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/spf13/cobra"
)

// DefaultClusterDir is where `herald cluster up` keeps its state file and data.
const DefaultClusterDir = "herald-cluster"

func clusterCmd(e *env) *cobra.Command {
	var dir string
	cmd := &cobra.Command{Use: "cluster", Short: "Run a local Redis Cluster: up, status, down, failover, kill, restart",
		Long: `Run a Redis Cluster of redis-server processes on 127.0.0.1 for development and drills.
'up' starts the processes (AOF on, each in its own session, so they outlive this command),
joins them with CLUSTER MEET, ADDSLOTSRANGE and REPLICATE, waits until the cluster is healthy
and records ports, pids and node ids in DIR/cluster.json. 'down', 'kill' and 'restart' act
only on the pids recorded there. 'status' and 'failover' also work on any cluster named with
--redis.`}
	cmd.PersistentFlags().StringVar(&dir, "dir", DefaultClusterDir, "directory of the cluster's state file (cluster.json) and data")
	cmd.AddCommand(clusterUpCmd(e, &dir), clusterStatusCmd(e, &dir), clusterDownCmd(e, &dir),
		clusterFailoverCmd(e, &dir), clusterKillCmd(e, &dir), clusterRestartCmd(e, &dir))
	return cmd
}

func clusterUpCmd(e *env, dir *string) *cobra.Command {
	var masters, replicas, port int
	cmd := &cobra.Command{Use: "up", Short: "Start a local Redis Cluster (or start a stopped one in --dir again)",
		Long: `Start MASTERS x (1+REPLICAS) redis-server processes on 127.0.0.1 ports PORT, PORT+1, ...
(cluster bus ports 10000 higher; --port 0 picks free ports), with AOF on (appendfsync everysec),
cluster-node-timeout 5000 and one data directory per node under --dir, and wait until every
node reports cluster_state:ok, every replica master_link_status:up and every node's CLUSTER
SLOTS lists every replica. Prints every node and the URL to pass to --redis.
When --dir already holds a cluster, 'up' starts whichever of its nodes are not running, with
their data and node ids (after 'down', or a 'kill'), and only prints it when all run.`,
		Example: `  herald cluster up
  herald cluster up --masters 3 --replicas 1 --port 7001 --dir ./herald-cluster
  herald cluster up --port 0 --output json`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if masters < 1 || masters > redisproc.MaxClusterMasters {
				return usage("--masters %d out of range; use 1..%d", masters, redisproc.MaxClusterMasters)
			}
			if replicas < 0 || replicas > redisproc.MaxClusterReplicas {
				return usage("--replicas %d out of range; use 0..%d", replicas, redisproc.MaxClusterReplicas)
			}
			n := masters * (1 + replicas)
			if port != 0 && (port < 1024 || port+n-1 > 55535) {
				return usage("--port %d out of range for %d nodes; use 1024..%d (bus ports are 10000 higher), or 0 for free ports", port, n, 55535-n+1)
			}
			if strings.TrimSpace(*dir) == "" {
				return usage("--dir is empty; name a directory for the cluster's data, e.g. --dir ./herald-cluster")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			c, err := redisproc.LoadCluster(*dir)
			what := "started"
			switch {
			case err == nil:
				fl := cmd.Flags()
				if fl.Changed("masters") && masters != c.Masters || fl.Changed("replicas") && replicas != c.Replicas ||
					fl.Changed("port") && port != 0 && port != c.Nodes[0].Port {
					return usage("%s holds a cluster of %d masters with %d replica(s) per master on ports from %d; run 'herald cluster up --dir %s' without --masters/--replicas/--port to start it (again), or 'herald cluster down --purge --dir %s' to discard it",
						c.Dir, c.Masters, c.Replicas, c.Nodes[0].Port, *dir, *dir)
				}
				running := 0
				for _, nd := range c.Nodes {
					if c.Running(nd) {
						running++
					}
				}
				if running == len(c.Nodes) {
					what = "already running"
					break
				}
				// Stopped by 'down', or some nodes killed: start what is not running.
				if err := c.Start(ctx); err != nil {
					return fmt.Errorf("start the cluster in %s again: %w; its logs are in %s/*/redis.log", c.Dir, err, c.Dir)
				}
				what = "started again"
			case errors.Is(err, redisproc.ErrNoCluster):
				c, err = redisproc.StartCluster(ctx, redisproc.ClusterOptions{Masters: masters, Replicas: replicas, Port: port, Dir: *dir})
				if errors.Is(err, redisproc.ErrNotInstalled) {
					return fmt.Errorf("redis-server is not installed; install it (apt-get install -y redis-server, brew install redis) and run 'herald cluster up' again")
				}
				if err != nil {
					return err
				}
			default:
				return err
			}
			st, err := clusterStatusOf(ctx, c.URL(), c)
			if err != nil {
				return fmt.Errorf("the cluster in %s started but cannot be read: %w", c.Dir, err)
			}
			elapsed := time.Since(start)
			if e.json() {
				e.emit(map[string]any{"dir": c.Dir, "url": c.URL(), "action": what, "elapsed_ms": elapsed.Milliseconds(),
					"state": st.State, "masters": st.Masters, "replicas": st.Replicas, "nodes": st.Nodes}, nil)
				return nil
			}
			w := e.io.Out
			took := fmt.Sprintf(" in %.1fs", elapsed.Seconds())
			if what == "already running" {
				took = ""
			}
			fmt.Fprintf(w, "Cluster %s%s: %d masters, %d replicas, data in %s\n", what, took, st.Masters, st.Replicas, c.Dir)
			printNodes(w, st.Nodes)
			fmt.Fprintf(w, "\nURL: %s\n", c.URL())
			fmt.Fprintf(w, "Use it:  herald --redis %s topics   (or export HERALD_REDIS_URL=%s)\n", c.URL(), c.URL())
			fmt.Fprintf(w, "Stop it: herald cluster down --dir %s   (--purge also removes the data)\n", *dir)
			return nil
		})}
	fl := cmd.Flags()
	fl.IntVar(&masters, "masters", redisproc.DefaultClusterMasters, "number of masters (the slots are split evenly)")
	fl.IntVar(&replicas, "replicas", 1, "replicas per master")
	fl.IntVar(&port, "port", 7001, "first port (nodes take PORT, PORT+1, ...; 0 picks free ports)")
	return cmd
}

// nodeRow is one node in `herald cluster up/status` output (docs/cli.md).
type nodeRow struct {
	Addr       string `json:"addr"`
	Port       int    `json:"port"`
	ID         string `json:"id"`
	Role       string `json:"role"`             // master or replica
	Master     string `json:"master,omitempty"` // a replica's master (host:port)
	Slots      string `json:"slots"`            // "0-5460", "-" for none
	SlotCount  int    `json:"slot_count"`
	Health     string `json:"health"`          // ok, pfail, fail, unreachable, down (not running)
	Link       string `json:"link,omitempty"`  // a replica's master_link_status (up/down)
	ReplOffset int64  `json:"repl_offset"`     // the node's replication offset
	LagBytes   *int64 `json:"lag_bytes"`       // a replica's offset behind its master (null: unknown or master)
	Pid        int    `json:"pid,omitempty"`   // when started by herald cluster up
	Error      string `json:"error,omitempty"` // why the node could not be asked
	first      int    // first slot, for ordering
	masterID   string // for ordering
}

// clusterStatus is the JSON of `herald cluster status` (docs/cli.md).
type clusterStatus struct {
	State         string    `json:"state"`   // cluster_state of the reachable nodes: ok, or fail if any says fail
	Masters       int       `json:"masters"` // masters serving slots
	Replicas      int       `json:"replicas"`
	SlotsAssigned int       `json:"slots_assigned"`
	Nodes         []nodeRow `json:"nodes"`
}

// clusterStatusOf reads a cluster's topology and every node's health
// through url; state, when known, adds pids and marks nodes whose process
// is not running.
func clusterStatusOf(ctx context.Context, url string, state *redisproc.Cluster) (clusterStatus, error) {
	var st clusterStatus
	db, err := openDB(ctx, url)
	if err != nil {
		return st, err
	}
	defer db.Close()
	if !db.IsCluster() {
		return st, usage("Redis at %s is not a cluster (cluster_enabled:0); 'herald cluster status' needs cluster nodes, 'herald doctor' checks a standalone server", url)
	}
	reports := db.Survey(ctx)
	byAddr := map[string]rdb.NodeReport{}
	var view []rdb.TopologyNode
	viewFromMaster := false
	st.State = "ok"
	for _, r := range reports {
		byAddr[r.Addr] = r
		if r.Err != nil {
			continue
		}
		if s := r.ClusterInfo["cluster_state"]; s != "ok" {
			st.State = s
		}
		if len(r.Topology) > 0 && (view == nil || !viewFromMaster && r.Info["role"] == "master") {
			view, viewFromMaster = r.Topology, r.Info["role"] == "master"
			st.SlotsAssigned, _ = strconv.Atoi(r.ClusterInfo["cluster_slots_assigned"])
		}
	}
	if view == nil {
		return st, fmt.Errorf("no node of the cluster at %s answered CLUSTER NODES; start its nodes (herald cluster up --dir DIR) or check --redis", url)
	}
	// Nodes the client does not route to (a master without slots, a failed
	// replica) are asked over connections of their own.
	var missing []string
	for _, v := range view {
		if _, ok := byAddr[v.Addr]; !ok && v.Addr != "" {
			missing = append(missing, v.Addr)
		}
	}
	for _, r := range db.SurveyAddrs(ctx, missing) {
		byAddr[r.Addr] = r
		if r.Err == nil && r.ClusterInfo["cluster_state"] != "ok" {
			st.State = r.ClusterInfo["cluster_state"]
		}
	}
	addrOf := map[string]string{}
	for _, v := range view {
		addrOf[v.ID] = v.Addr
	}
	for _, v := range view {
		row := nodeRow{Addr: v.Addr, ID: v.ID, Role: "replica", Master: addrOf[v.MasterID], Slots: rdb.FormatSlots(v.Slots),
			SlotCount: v.SlotCount(), Health: "ok", first: redisproc.ClusterSlots, masterID: v.MasterID}
		if _, p, err := net.SplitHostPort(v.Addr); err == nil {
			row.Port, _ = strconv.Atoi(p)
		}
		if v.Master {
			row.Role, row.masterID = "master", v.ID
			if len(v.Slots) > 0 { // a failed master whose slots moved serves nothing
				st.Masters++
			}
		} else {
			st.Replicas++
		}
		if len(v.Slots) > 0 {
			row.first = v.Slots[0].Start
		}
		r, ok := byAddr[v.Addr]
		switch {
		case v.HasFlag("fail"):
			row.Health = "fail"
		case v.HasFlag("fail?"):
			row.Health = "pfail"
		case !ok:
			row.Health, row.Error = "unreachable", "no address"
		case r.Err != nil:
			row.Health, row.Error = "unreachable", r.Err.Error()
		}
		if ok && r.Err == nil {
			if v.Master {
				row.ReplOffset, _ = strconv.ParseInt(r.Info["master_repl_offset"], 10, 64)
			} else {
				row.Link = r.Info["master_link_status"]
				row.ReplOffset, _ = strconv.ParseInt(r.Info["slave_repl_offset"], 10, 64)
			}
		}
		if !v.Master {
			row.LagBytes = replicaLag(byAddr[addrOf[v.MasterID]], r, v.Addr)
		}
		if state != nil {
			if nd, err := state.Node(row.Port); err == nil && strings.HasPrefix(v.Addr, "127.0.0.1:") {
				row.Pid = nd.Pid
				if !state.Running(nd) {
					row.Health, row.Pid = "down", 0
				}
			}
		}
		st.Nodes = append(st.Nodes, row)
	}
	sortRows(st.Nodes)
	return st, nil
}

// replicaLag is how many bytes of its master's replication stream the
// replica at addr has not processed: the master's master_repl_offset minus
// the replica's own slave_repl_offset (both asked at the same moment), or,
// when the replica does not answer, minus the offset it last acknowledged
// ("slave0:ip=127.0.0.1,port=7004,state=online,offset=123,lag=0" in the
// master's INFO replication; acknowledgements come every second).
func replicaLag(master, replica rdb.NodeReport, addr string) *int64 {
	if master.Err != nil || master.Info == nil {
		return nil
	}
	mo, err := strconv.ParseInt(master.Info["master_repl_offset"], 10, 64)
	if err != nil {
		return nil
	}
	if replica.Err == nil && replica.Info != nil {
		if ro, err := strconv.ParseInt(replica.Info["slave_repl_offset"], 10, 64); err == nil {
			lag := max(mo-ro, 0)
			return &lag
		}
	}
	host, port, _ := net.SplitHostPort(addr)
	for k, v := range master.Info {
		if !strings.HasPrefix(k, "slave") || !strings.Contains(v, "port=") {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Split(v, ",") {
			if a, b, ok := strings.Cut(kv, "="); ok {
				f[a] = b
			}
		}
		if f["ip"] == host && f["port"] == port {
			off, err := strconv.ParseInt(f["offset"], 10, 64)
			if err != nil {
				return nil
			}
			lag := max(mo-off, 0)
			return &lag
		}
	}
	return nil
}

// sortRows puts masters in slot order, each followed by its replicas.
func sortRows(rows []nodeRow) {
	first := map[string]int{}
	for _, r := range rows {
		if r.Role == "master" {
			first[r.ID] = r.first
		}
	}
	key := func(r nodeRow) (int, int, int) {
		f, ok := first[r.masterID]
		if !ok {
			f = redisproc.ClusterSlots + 1 // orphans last
		}
		rank := 1
		if r.Role == "master" {
			rank = 0
		}
		return f, rank, r.Port
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a1, a2, a3 := key(rows[i])
		b1, b2, b3 := key(rows[j])
		if a1 != b1 {
			return a1 < b1
		}
		if a2 != b2 {
			return a2 < b2
		}
		return a3 < b3
	})
}

func printNodes(w io.Writer, rows []nodeRow) {
	table(w, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NODE\tROLE\tSLOTS\tMASTER\tHEALTH\tLINK\tLAG\tPID\tID")
		for _, r := range rows {
			master, link, lag, pid := "-", "-", "-", "-"
			if r.Master != "" {
				master = r.Master
			}
			if r.Link != "" {
				link = r.Link
			}
			if r.LagBytes != nil {
				lag = strconv.FormatInt(*r.LagBytes, 10)
			}
			if r.Pid != 0 {
				pid = strconv.Itoa(r.Pid)
			}
			slots := r.Slots
			if r.SlotCount > 0 {
				slots = fmt.Sprintf("%s (%d)", r.Slots, r.SlotCount)
			}
			id := r.ID
			if len(id) > 8 {
				id = id[:8]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Addr, r.Role, slots, master, r.Health, link, lag, pid, id)
		}
	})
}

// openDB connects to Redis for the cluster and doctor commands; a
// malformed URL is a usage error.
func openDB(ctx context.Context, url string) (*rdb.DB, error) {
	if _, err := rdb.ParseURL(url); err != nil {
		return nil, usage("%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	db, err := rdb.Open(ctx, rdb.Options{URL: url})
	if err != nil {
		return nil, fmt.Errorf("%w; is Redis running there? ('herald cluster up' starts a local cluster)", err)
	}
	return db, nil
}

// clusterSource picks what a command looks at: --dir when given, else
// --redis (flag or HERALD_REDIS_URL) when given, else the default --dir.
// state is nil when the URL comes from --redis.
func clusterSource(cmd *cobra.Command, e *env, dir string) (url string, state *redisproc.Cluster, err error) {
	redisGiven := cmd.Flags().Changed("redis") || os.Getenv("HERALD_REDIS_URL") != ""
	if !cmd.Flags().Changed("dir") && redisGiven {
		return e.redisURL, nil, nil
	}
	c, err := redisproc.LoadCluster(dir)
	if errors.Is(err, redisproc.ErrNoCluster) {
		return "", nil, usage("no cluster state in %s (%s); start a local cluster with 'herald cluster up --dir %s', or name a running cluster with --redis redis://HOST:PORT",
			dir, redisproc.ClusterStateFile, dir)
	}
	if err != nil {
		return "", nil, err
	}
	url = c.RunningURL()
	if url == "" {
		return "", nil, fmt.Errorf("no node of the cluster in %s is running; start it with 'herald cluster up --dir %s'", c.Dir, dir)
	}
	return url, c, nil
}

func clusterStatusCmd(e *env, dir *string) *cobra.Command {
	return &cobra.Command{Use: "status", Short: "Show nodes, roles, slots, health and replication lag",
		Long: `Show every node of a cluster: role, slots, its master (replicas), health (ok, pfail, fail,
unreachable, or down when a process started by 'herald cluster up' is not running), the
replica's master_link_status and how many bytes of the master's replication stream it has
not processed yet. Which cluster: the one of --dir when --dir is given, else the one named by
--redis (or HERALD_REDIS_URL) when set, else the one of ./herald-cluster.`,
		Example: `  herald cluster status
  herald cluster status --redis redis://10.0.0.5:7001,10.0.0.6:7001 --output json`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			url, state, err := clusterSource(cmd, e, *dir)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			st, err := clusterStatusOf(ctx, url, state)
			if err != nil {
				return err
			}
			e.emit(st, func(w io.Writer) {
				fmt.Fprintf(w, "cluster_state:%s  %d masters, %d replicas, %d/%d slots assigned\n",
					st.State, st.Masters, st.Replicas, st.SlotsAssigned, redisproc.ClusterSlots)
				printNodes(w, st.Nodes)
			})
			return nil
		})}
}

func clusterDownCmd(e *env, dir *string) *cobra.Command {
	var purge bool
	cmd := &cobra.Command{Use: "down", Short: "Stop the cluster that 'up' started (by recorded pid); --purge removes its data",
		Long: `Stop every node of the cluster in --dir: SIGTERM to the pids recorded by 'herald cluster up'
(a clean shutdown; AOF flushed), SIGKILL to any still running after 15 s. A pid is only
signalled while /proc shows it is a redis-server serving its node's port. Without --purge the
data stays and 'herald cluster up --dir DIR' starts the same cluster again.`,
		Example: `  herald cluster down
  herald cluster down --purge --dir ./herald-cluster`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := redisproc.LoadCluster(*dir)
			if errors.Is(err, redisproc.ErrNoCluster) {
				return usage("no cluster state in %s (%s): nothing to stop; pass the --dir given to 'herald cluster up'", *dir, redisproc.ClusterStateFile)
			}
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			start := time.Now()
			stopped, err := c.Stop(ctx)
			if err != nil {
				return err
			}
			if purge {
				if err := c.Purge(); err != nil {
					return fmt.Errorf("remove the data in %s: %w", c.Dir, err)
				}
			}
			n := 0
			for _, s := range stopped {
				if s.Note != "not running" {
					n++
				}
			}
			e.emit(map[string]any{"dir": c.Dir, "nodes": stopped, "stopped": n, "purged": purge, "elapsed_ms": time.Since(start).Milliseconds()},
				func(w io.Writer) {
					for _, s := range stopped {
						fmt.Fprintf(w, "127.0.0.1:%d\tpid %d\t%s\n", s.Port, s.Pid, s.Note)
					}
					fmt.Fprintf(w, "Stopped %d of %d nodes in %.1fs.\n", n, len(stopped), time.Since(start).Seconds())
					if purge {
						fmt.Fprintf(w, "Removed the data in %s.\n", c.Dir)
					} else {
						fmt.Fprintf(w, "Data kept in %s: 'herald cluster up --dir %s' starts the cluster again; --purge removes it.\n", c.Dir, *dir)
					}
				})
			return nil
		})}
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove the data directory")
	return cmd
}

// parseNode reads NODE as PORT or HOST:PORT.
func parseNode(spec, defHost string) (string, int, error) {
	host, ps := defHost, spec
	if strings.Contains(spec, ":") {
		h, p, err := net.SplitHostPort(spec)
		if err != nil || h == "" {
			return "", 0, usage("NODE %q is not a port or host:port; use e.g. 7001 or 127.0.0.1:7001", spec)
		}
		host, ps = h, p
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, usage("NODE %q is not a port or host:port; use e.g. 7001 or 127.0.0.1:7001", spec)
	}
	if host == "localhost" {
		host = "127.0.0.1" // as the cluster names its nodes
	}
	return host, port, nil
}

// localNode resolves NODE to a node of the cluster in dir that this tool started.
func localNode(spec, dir, verb string) (*redisproc.Cluster, *redisproc.ClusterNode, error) {
	host, port, err := parseNode(spec, "127.0.0.1")
	if err != nil {
		return nil, nil, err
	}
	if host != "127.0.0.1" {
		return nil, nil, usage("'herald cluster %s' acts only on local nodes started by 'herald cluster up'; %q is not 127.0.0.1", verb, host)
	}
	c, err := redisproc.LoadCluster(dir)
	if errors.Is(err, redisproc.ErrNoCluster) {
		return nil, nil, usage("'herald cluster %s' acts only on nodes started by 'herald cluster up', and %s holds no cluster state; pass the --dir given to 'herald cluster up'", verb, dir)
	}
	if err != nil {
		return nil, nil, err
	}
	nd, err := c.Node(port)
	if err != nil {
		return nil, nil, usage("%v; 'herald cluster status --dir %s' lists them", err, dir)
	}
	return c, nd, nil
}

// describe says what role a node plays, from any reachable node's view.
func describe(c *redisproc.Cluster, addr string) string {
	view, err := c.Topology()
	if err != nil {
		return ""
	}
	addrOf := map[string]string{}
	for _, v := range view {
		addrOf[v.ID] = v.Addr
	}
	for _, v := range view {
		if v.Addr != addr {
			continue
		}
		if v.Master {
			return "master of slots " + rdb.FormatSlots(v.Slots)
		}
		return "replica of " + addrOf[v.MasterID]
	}
	return ""
}

func clusterKillCmd(e *env, dir *string) *cobra.Command {
	return &cobra.Command{Use: "kill NODE", Short: "SIGKILL one node started by 'up' (a crash, for drills); NODE is PORT or HOST:PORT",
		Long: `Kill one node of the cluster in --dir with SIGKILL, as a crash would, by the pid recorded
by 'herald cluster up'. When it was a master, its replica is promoted after the node timeout
(5 s) plus the election, about 7-9 s; meanwhile its slots refuse commands, and with
cluster-require-full-coverage yes the whole cluster does for about a second.
'herald cluster restart NODE' brings it back (a former master rejoins as a replica).`,
		Example: `  herald cluster kill 7001`,
		Args:    cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, nd, err := localNode(args[0], *dir, "kill")
			if err != nil {
				return err
			}
			role := describe(c, nd.Addr())
			pid, err := c.Kill(nd.Port)
			if err != nil {
				return fmt.Errorf("%w; 'herald cluster restart %d' starts it", err, nd.Port)
			}
			e.emit(map[string]any{"addr": nd.Addr(), "port": nd.Port, "pid": pid, "was": role}, func(w io.Writer) {
				fmt.Fprintf(w, "Killed %s (pid %d", nd.Addr(), pid)
				if role != "" {
					fmt.Fprintf(w, ", %s", role)
				}
				fmt.Fprintln(w, ").")
				if strings.HasPrefix(role, "master") {
					fmt.Fprintln(w, "Its replica takes over after the node timeout (about 7-9 s); 'herald cluster status' shows it.")
				}
				fmt.Fprintf(w, "Bring it back with: herald cluster restart %d --dir %s\n", nd.Port, *dir)
			})
			return nil
		})}
}

func clusterRestartCmd(e *env, dir *string) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{Use: "restart NODE", Short: "Start one node of 'up' again with its flags and data; NODE is PORT or HOST:PORT",
		Long: `Start one node of the cluster in --dir again (killing it first if it still runs) with the
same arguments and data directory: its nodes.conf keeps its identity and its AOF its data.
Waits until it reports cluster_state:ok and, as a replica, master_link_status:up.`,
		Example: `  herald cluster restart 7001`,
		Args:    cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usage("--timeout %s must be positive", timeout)
			}
			c, nd, err := localNode(args[0], *dir, "restart")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			start := time.Now()
			if err := c.Restart(ctx, nd.Port); err != nil {
				return err
			}
			if err := c.WaitNode(ctx, nd.Port); err != nil {
				return fmt.Errorf("%w; its log is %s/redis.log", err, nd.Dir)
			}
			role := describe(c, nd.Addr())
			e.emit(map[string]any{"addr": nd.Addr(), "port": nd.Port, "pid": nd.Pid, "role": role, "elapsed_ms": time.Since(start).Milliseconds()},
				func(w io.Writer) {
					fmt.Fprintf(w, "Restarted %s (pid %d) in %.1fs", nd.Addr(), nd.Pid, time.Since(start).Seconds())
					if role != "" {
						fmt.Fprintf(w, ": %s", role)
					}
					fmt.Fprintln(w, ".")
				})
			return nil
		})}
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long to wait for the node to rejoin")
	return cmd
}

func clusterFailoverCmd(e *env, dir *string) *cobra.Command {
	var (
		force   bool
		timeout time.Duration
	)
	cmd := &cobra.Command{Use: "failover NODE", Short: "Promote a replica (CLUSTER FAILOVER) and wait until it is master; NODE is PORT or HOST:PORT",
		Long: `Send CLUSTER FAILOVER to the replica NODE: it catches up with its master, takes over its
slots and the old master becomes its replica, without losing acknowledged writes. With
--force the replica takes over without its master's agreement (when the master is down).
Works on the cluster of --dir, or on one named by --redis (as 'status' chooses); a bare PORT
means 127.0.0.1:PORT.`,
		Example: `  herald cluster failover 7004
  herald cluster failover 127.0.0.1:7005 --force`,
		Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usage("--timeout %s must be positive", timeout)
			}
			host, port, err := parseNode(args[0], "127.0.0.1")
			if err != nil {
				return err
			}
			addr := net.JoinHostPort(host, strconv.Itoa(port))
			url, state, err := clusterSource(cmd, e, *dir)
			if err != nil {
				var ue *UsageError
				if !errors.As(err, &ue) || cmd.Flags().Changed("dir") {
					return err
				}
				url = "redis://" + addr // no state and no --redis: the node itself is the seed
			}
			if state != nil {
				if _, err := state.Node(port); err != nil {
					return usage("%v; 'herald cluster status' lists them", err)
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			db, err := openDB(ctx, url)
			if err != nil {
				return err
			}
			defer db.Close()
			if !db.IsCluster() {
				return usage("Redis at %s is not a cluster; 'herald cluster failover' needs a cluster replica", url)
			}
			view, err := db.NodeTopology(ctx, addr)
			if err != nil {
				return usage("cannot read node %s: %v; name a replica of the cluster ('herald cluster status' lists them)", addr, err)
			}
			me, masterAddr := myself(view)
			if me.Master {
				return usage("%s is a master (slots %s); name one of its replicas ('herald cluster status' lists them)", addr, rdb.FormatSlots(me.Slots))
			}
			start := time.Now()
			if err := db.ClusterFailover(ctx, addr, force); err != nil {
				if !force && strings.Contains(err.Error(), "FORCE") {
					return fmt.Errorf("CLUSTER FAILOVER on %s: %w; its master %s seems down: use --force", addr, err, masterAddr)
				}
				return fmt.Errorf("CLUSTER FAILOVER on %s: %w", addr, err)
			}
			var now rdb.TopologyNode
			for {
				view, err := db.NodeTopology(ctx, addr)
				if err == nil {
					if now, _ = myself(view); now.Master {
						break
					}
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s is not master %s after CLUSTER FAILOVER; see 'herald cluster status' (a failover needs its master, or with --force a majority of masters, to answer)",
						addr, timeout)
				case <-time.After(50 * time.Millisecond):
				}
			}
			promoted := time.Since(start)
			// The old master learns that it is now a replica a moment later,
			// and the other nodes from its next ping: wait until every node
			// that answers agrees, so that what follows sees the new roles.
			if masterAddr != "" {
				waitRoles(ctx, db, addr, masterAddr)
			}
			agreed := time.Since(start)
			e.emit(map[string]any{"addr": addr, "role": "master", "slots": rdb.FormatSlots(now.Slots), "previous_master": masterAddr,
				"forced": force, "promoted_ms": promoted.Milliseconds(), "agreed_ms": agreed.Milliseconds()}, func(w io.Writer) {
				fmt.Fprintf(w, "OK %s is master of slots %s (was replica of %s): promoted after %.1fs, every node agreed after %.1fs\n",
					addr, rdb.FormatSlots(now.Slots), masterAddr, promoted.Seconds(), agreed.Seconds())
			})
			return nil
		})}
	cmd.Flags().BoolVar(&force, "force", false, "take over without the master's agreement (CLUSTER FAILOVER FORCE), for a dead master")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the replica to become master")
	return cmd
}

// waitRoles waits (until ctx ends) for every reachable node to see promoted
// as a master and demoted as a replica.
func waitRoles(ctx context.Context, db *rdb.DB, promoted, demoted string) {
	view, err := db.NodeTopology(ctx, promoted)
	if err != nil {
		return
	}
	addrs := make([]string, 0, len(view))
	for _, v := range view {
		if v.Addr != "" && !v.Failed() {
			addrs = append(addrs, v.Addr)
		}
	}
	for ctx.Err() == nil {
		agreed := true
		for _, r := range db.SurveyAddrs(ctx, addrs) {
			if r.Err != nil {
				continue // down: it learns when it comes back
			}
			for _, v := range r.Topology {
				if v.Addr == promoted && !v.Master || v.Addr == demoted && v.Master {
					agreed = false
				}
			}
		}
		if agreed {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// myself returns the node's own line of a CLUSTER NODES view and its master's address.
func myself(view []rdb.TopologyNode) (rdb.TopologyNode, string) {
	var me rdb.TopologyNode
	addrOf := map[string]string{}
	for _, v := range view {
		addrOf[v.ID] = v.Addr
		if v.Myself {
			me = v
		}
	}
	return me, addrOf[me.MasterID]
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
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
	subcommands(untimed(cmd)) // each subcommand has its own bounds (--timeout of failover and restart is theirs)
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

// openDB connects to Redis for the cluster and doctor commands; a
// malformed URL is a usage error.
func openDB(ctx context.Context, url string) (*rdb.DB, error) {
	if err := checkRedisURL(url); err != nil {
		return nil, err
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
					st.State, st.Masters, st.Replicas, st.SlotsAssigned, rdb.ClusterSlots)
				printNodes(w, st.Nodes)
			})
			return nil
		})}
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

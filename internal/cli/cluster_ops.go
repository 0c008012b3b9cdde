package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
)

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

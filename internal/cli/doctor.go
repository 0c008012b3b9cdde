package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald/internal/rdb"
)

// Finding levels of `herald doctor`.
const (
	levelOK    = "ok"
	levelWarn  = "warn"
	levelError = "error"
)

// finding is one result of `herald doctor` (docs/cli.md). Findings with the
// same level, check, message and fix on several nodes are merged.
type finding struct {
	Level   string   `json:"level"` // ok, warn, error
	Check   string   `json:"check"` // connect, version, maxmemory-policy, persistence, replicas, cluster-state, full-coverage
	Nodes   []string `json:"nodes,omitempty"`
	Message string   `json:"message"`
	Fix     string   `json:"fix,omitempty"`
}

// doctorReport is the JSON of `herald doctor` (docs/cli.md).
type doctorReport struct {
	URL      string    `json:"url"`
	Mode     string    `json:"mode"` // standalone or cluster ("" when unreachable)
	Nodes    int       `json:"nodes"`
	Findings []finding `json:"findings"`
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
}

// doctorChecks is the order in which findings are printed.
var doctorChecks = []string{"connect", "version", "maxmemory-policy", "persistence", "replicas", "cluster-state", "full-coverage"}

func (r *doctorReport) add(level, check, node, msg, fix string) {
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.Level == level && f.Check == check && f.Message == msg && f.Fix == fix {
			if node != "" {
				f.Nodes = append(f.Nodes, node)
			}
			return
		}
	}
	f := finding{Level: level, Check: check, Message: msg, Fix: fix}
	if node != "" {
		f.Nodes = []string{node}
	}
	r.Findings = append(r.Findings, f)
}

func doctorCmd(e *env) *cobra.Command {
	return untimed(&cobra.Command{Use: "doctor", Short: "Check a Redis deployment (standalone or cluster) for Herald; exit 1 on errors",
		Long: `Check the deployment named by --redis (a standalone server, or cluster seeds) for what Herald
needs, on every node, and print each finding with its fix:

  version           error below Redis 6.2 (XAUTOCLAIM), warning below 7.0
  maxmemory-policy  error unless noeviction: eviction silently deletes streams
  persistence       warning when neither AOF nor RDB snapshots are on
  replicas          warning for a master without a replica; error when --redis is a replica
  cluster-state     error unless every node reports cluster_state:ok and none is failed
  full-coverage     warning for cluster-require-full-coverage yes

Exits 1 when any finding is an error (or Redis cannot be reached), 0 otherwise.`,
		Example: `  herald doctor --redis redis://127.0.0.1:6379
  herald doctor --redis redis://127.0.0.1:7001,127.0.0.1:7002 --output json`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			rep := doctorReport{URL: redactValue(e.redisURL), Findings: []finding{}}
			db, err := openDB(ctx, e.redisURL)
			if err != nil {
				if _, ok := err.(*UsageError); ok {
					return err
				}
				rep.add(levelError, "connect", "", err.Error(), "check --redis (or HERALD_REDIS_URL) and that Redis is running there")
			} else {
				defer db.Close()
				diagnose(ctx, db, &rep)
			}
			for _, f := range rep.Findings {
				switch f.Level {
				case levelError:
					rep.Errors++
				case levelWarn:
					rep.Warnings++
				}
			}
			e.emit(rep, func(w io.Writer) { printDoctor(w, rep) })
			if rep.Errors > 0 {
				return fmt.Errorf("doctor found %d error(s) in %s; apply the fixes above and run 'herald doctor' again", rep.Errors, e.redisURL)
			}
			return nil
		})}) // bounded by its own 30 s, and reports an unreachable node instead of failing
}

// diagnose runs every check on every node the client knows.
func diagnose(ctx context.Context, db *rdb.DB, rep *doctorReport) {
	reports := db.Survey(ctx, "save", "appendfsync", "cluster-require-full-coverage")
	rep.Nodes = len(reports)
	rep.Mode = "standalone"
	if db.IsCluster() {
		rep.Mode = "cluster"
	}
	for _, r := range reports {
		if r.Err != nil {
			rep.add(levelError, "connect", r.Addr, "node does not answer: "+r.Err.Error(),
				"start the node or fix the network; 'herald cluster status' shows which nodes are down")
			continue
		}
		checkVersion(rep, r)
		checkMaxmemory(rep, r)
		checkPersistence(rep, r)
		if rep.Mode == "standalone" {
			checkStandaloneReplicas(rep, r)
			continue
		}
		if st := r.ClusterInfo["cluster_state"]; st != "ok" {
			rep.add(levelError, "cluster-state", r.Addr, fmt.Sprintf("cluster_state:%s (%s of %d slots served)", st, r.ClusterInfo["cluster_slots_ok"], rdb.ClusterSlots),
				"'herald cluster status' shows the failed nodes; restart them, or promote a replica with 'herald cluster failover --force NODE'")
		} else {
			rep.add(levelOK, "cluster-state", r.Addr, "cluster_state:ok", "")
		}
		switch r.Config["cluster-require-full-coverage"] {
		case "yes":
			rep.add(levelWarn, "full-coverage", r.Addr, "cluster-require-full-coverage yes: while any shard is down the WHOLE cluster refuses commands (about 1 s during every failover)",
				"CONFIG SET cluster-require-full-coverage no on every node, and CONFIG REWRITE (or set it in redis.conf); Herald retries CLUSTERDOWN with backoff either way")
		case "no":
			rep.add(levelOK, "full-coverage", r.Addr, "cluster-require-full-coverage no: healthy shards keep serving while one fails over", "")
		default:
			rep.add(levelWarn, "full-coverage", r.Addr, "cluster-require-full-coverage unreadable: "+errText(r.ConfigErr),
				"check with your provider that cluster-require-full-coverage is no")
		}
	}
	if view := rdb.ViewOf(reports); rep.Mode == "cluster" && view.Nodes != nil {
		checkClusterReplicas(rep, view.Nodes)
	}
	// Print in check order, errors first within a check.
	rank := map[string]int{levelError: 0, levelWarn: 1, levelOK: 2}
	order := map[string]int{}
	for i, c := range doctorChecks {
		order[c] = i
	}
	fs := rep.Findings
	for i := 1; i < len(fs); i++ { // insertion sort: stable and small
		for j := i; j > 0; j-- {
			a, b := fs[j-1], fs[j]
			if order[a.Check] < order[b.Check] || order[a.Check] == order[b.Check] && rank[a.Level] <= rank[b.Level] {
				break
			}
			fs[j-1], fs[j] = b, a
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "not reported"
	}
	return err.Error()
}

// versionAtLeast compares a "major.minor.patch" version with major.minor.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	ma, _ := strconv.Atoi(parts[0])
	mi := 0
	if len(parts) > 1 {
		mi, _ = strconv.Atoi(parts[1])
	}
	return ma > major || ma == major && mi >= minor
}

func checkVersion(rep *doctorReport, r rdb.NodeReport) {
	v := r.Info["redis_version"]
	switch {
	case v == "":
		rep.add(levelWarn, "version", r.Addr, "INFO reports no redis_version", "check that the server is Redis 7.0 or newer")
	case !versionAtLeast(v, 6, 2):
		rep.add(levelError, "version", r.Addr, "Redis "+v+" is too old: Herald reclaims crashed consumers' events with XAUTOCLAIM (Redis 6.2+)",
			"upgrade to Redis 7.0 or newer")
	case !versionAtLeast(v, 7, 0):
		rep.add(levelWarn, "version", r.Addr, "Redis "+v+" works, but before 7.0 XAUTOCLAIM does not report trimmed pending entries and sharded pub/sub is missing",
			"upgrade to Redis 7.0 or newer")
	default:
		rep.add(levelOK, "version", r.Addr, "Redis "+v, "")
	}
}

func checkMaxmemory(rep *doctorReport, r rdb.NodeReport) {
	p := r.Info["maxmemory_policy"] // INFO works where CONFIG is disabled
	switch {
	case p == "":
		rep.add(levelWarn, "maxmemory-policy", r.Addr, "INFO reports no maxmemory_policy",
			"make sure maxmemory-policy is noeviction (CONFIG GET maxmemory-policy, or your provider's settings)")
	case p != "noeviction":
		rep.add(levelError, "maxmemory-policy", r.Addr, "maxmemory-policy is "+p+": when memory runs out Redis evicts keys, silently deleting streams, consumer groups and dead letters",
			"CONFIG SET maxmemory-policy noeviction, and set it in redis.conf (or your provider's parameter group); full memory then fails writes loudly instead")
	default:
		limit := "no maxmemory limit"
		if h := r.Info["maxmemory_human"]; r.Info["maxmemory"] != "0" && h != "" {
			limit = "maxmemory " + h + ": writes fail with OOM when full"
		}
		rep.add(levelOK, "maxmemory-policy", r.Addr, "maxmemory-policy noeviction ("+limit+")", "")
	}
}

func checkPersistence(rep *doctorReport, r rdb.NodeReport) {
	save, saveKnown := r.Config["save"]
	switch {
	case r.Info["aof_enabled"] == "1":
		msg := "AOF on"
		if fs := r.Config["appendfsync"]; fs != "" {
			msg += " (appendfsync " + fs + ")"
		}
		rep.add(levelOK, "persistence", r.Addr, msg, "")
	case saveKnown && strings.TrimSpace(save) != "":
		rep.add(levelOK, "persistence", r.Addr, fmt.Sprintf("RDB snapshots only (save %q): a crash loses events written since the last snapshot; AOF (appendonly yes) keeps all but about 1 s", save), "")
	case saveKnown:
		rep.add(levelWarn, "persistence", r.Addr, "neither AOF nor RDB snapshots: a restart loses every event this node holds",
			"CONFIG SET appendonly yes (appendfsync everysec), and CONFIG REWRITE or set it in redis.conf")
	default:
		rep.add(levelWarn, "persistence", r.Addr, "AOF off, and the RDB settings are unreadable (CONFIG GET: "+errText(r.ConfigErr)+")",
			"turn on appendonly yes (appendfsync everysec) in the server's or provider's settings")
	}
}

func checkStandaloneReplicas(rep *doctorReport, r rdb.NodeReport) {
	switch {
	case r.Info["role"] == "slave":
		rep.add(levelError, "replicas", r.Addr, "this server is a replica (read-only): publishing fails with READONLY",
			fmt.Sprintf("point --redis at its master %s:%s", r.Info["master_host"], r.Info["master_port"]))
	case r.Info["connected_slaves"] == "0":
		rep.add(levelWarn, "replicas", r.Addr, "no replica: losing this server loses its events, and durability 'replicated' cannot be met",
			"run a replica (REPLICAOF on a second server) with Sentinel for failover, or a cluster with replicas ('herald cluster up --replicas 1' locally)")
	default:
		rep.add(levelOK, "replicas", r.Addr, r.Info["connected_slaves"]+" connected replica(s)", "")
	}
}

func checkClusterReplicas(rep *doctorReport, view []rdb.TopologyNode) {
	live := map[string]int{}
	for _, v := range view {
		if v.Failed() {
			rep.add(levelError, "cluster-state", v.Addr, "node flagged "+strings.Join(v.Flags, ",")+" by the cluster",
				"restart it ('herald cluster restart PORT' for a local cluster) or remove it with CLUSTER FORGET")
			continue
		}
		if !v.Master && v.MasterID != "" {
			live[v.MasterID]++
		}
	}
	for _, v := range view {
		if !v.Master || len(v.Slots) == 0 || v.Failed() {
			continue
		}
		if n := live[v.ID]; n == 0 {
			rep.add(levelWarn, "replicas", v.Addr, "master without a live replica: if it fails, its slots stay down and their events are lost",
				"add a replica: redis-cli --cluster add-node NEW_HOST:PORT "+v.Addr+" --cluster-slave (or 'herald cluster up --replicas 1' locally)")
		} else {
			rep.add(levelOK, "replicas", v.Addr, "master with live replica(s)", "")
		}
	}
}

func printDoctor(w io.Writer, rep doctorReport) {
	mode := rep.Mode
	if mode == "" {
		mode = "unreachable"
	}
	fmt.Fprintf(w, "herald doctor: %s (%s, %d node(s))\n", rep.URL, mode, rep.Nodes)
	table(w, func(tw *tabwriter.Writer) {
		for _, f := range rep.Findings {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(f.Level), f.Check, f.Message)
			switch {
			case len(f.Nodes) == 0 || rep.Nodes <= 1:
			case len(f.Nodes) == rep.Nodes && f.Level != levelOK:
				fmt.Fprintf(tw, "\t\tnodes: all %d\n", rep.Nodes)
			case len(f.Nodes) < rep.Nodes:
				fmt.Fprintf(tw, "\t\tnodes: %s\n", strings.Join(f.Nodes, ", "))
			}
			if f.Fix != "" {
				fmt.Fprintf(tw, "\t\tfix: %s\n", f.Fix)
			}
		}
	})
	fmt.Fprintf(w, "%d error(s), %d warning(s)\n", rep.Errors, rep.Warnings)
}

package cli_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// clusterUpJSON is what `herald cluster up -o json` prints.
type clusterUpJSON struct {
	Dir      string `json:"dir"`
	URL      string `json:"url"`
	State    string `json:"state"`
	Masters  int    `json:"masters"`
	Replicas int    `json:"replicas"`
	Nodes    []struct {
		Addr   string `json:"addr"`
		Port   int    `json:"port"`
		Role   string `json:"role"`
		Master string `json:"master"`
		Slots  string `json:"slots"`
		Health string `json:"health"`
		Link   string `json:"link"`
		Pid    int    `json:"pid"`
	} `json:"nodes"`
}

// clusterGone reports whether pid no longer runs: no /proc entry, or a
// zombie waiting for its new parent to reap it.
func clusterGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndex(s, ")")
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// clusterGoneSoon waits up to 5 s for pid to exit: a process that was just
// killed may still be tearing down.
func clusterGoneSoon(pid int) bool {
	return redistest.Poll(5*time.Second, func() bool { return clusterGone(pid) })
}

// clusterKillAll SIGKILLs whatever `herald cluster up` left running in dir,
// by the recorded pids only (redisproc checks each is a redis-server of its port).
func clusterKillAll(dir string) {
	c, err := redisproc.LoadCluster(dir)
	if err != nil {
		return
	}
	for _, nd := range c.Nodes {
		_, _ = c.Kill(nd.Port) // cleanup: a node may be down already
	}
}

func clusterJSON(t *testing.T, r result, v any) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	if err := json.Unmarshal([]byte(r.out), v); err != nil {
		t.Fatalf("%v in %q", err, r.out)
	}
}

// numsubOn asks one node (not the cluster) how many subscribers it holds.
func numsubOn(t *testing.T, port int, ch string) int {
	out, err := exec.Command("redis-cli", "-p", strconv.Itoa(port), "PUBSUB", "NUMSUB", ch).Output()
	if err != nil {
		t.Fatalf("redis-cli PUBSUB NUMSUB on %d: %v", port, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("redis-cli PUBSUB NUMSUB on %d: %q", port, out)
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// One cluster, started by the binary and used from other processes:
// status, the two-node channel walkthrough, doctor, failover, kill and
// restart, then `down --purge` leaves no process and no data.
func TestClusterUpWalkthroughDown(t *testing.T) {
	t.Parallel()
	redistest.Skip(t)
	ns := redistest.Namespace(t)
	dir := filepath.Join(t.TempDir(), "herald-cluster")
	t.Cleanup(func() { clusterKillAll(dir) }) // runs before TempDir's removal
	start := time.Now()
	var up clusterUpJSON
	clusterJSON(t, runBin(t, ns, "", "cluster", "up", "--masters", "3", "--replicas", "1", "--port", "0", "--dir", dir, "-o", "json"), &up)
	t.Logf("herald cluster up took %v (the process exited; the cluster runs on)", time.Since(start))
	if up.State != "ok" || up.Masters != 3 || up.Replicas != 3 || len(up.Nodes) != 6 || !strings.HasPrefix(up.URL, "redis://127.0.0.1:") {
		t.Fatalf("cluster up printed %+v", up)
	}
	var masters, replicas []int
	pids := map[int]int{}
	for _, n := range up.Nodes {
		if n.Pid <= 0 || clusterGone(n.Pid) || n.Health != "ok" {
			t.Fatalf("node %+v is not running", n)
		}
		pids[n.Port] = n.Pid
		if n.Role == "master" && n.Slots != "-" {
			masters = append(masters, n.Port)
		} else if n.Role == "replica" && n.Link == "up" && n.Master != "" {
			replicas = append(replicas, n.Port)
		}
	}
	if len(masters) != 3 || len(replicas) != 3 {
		t.Fatalf("masters %v replicas %v in %+v", masters, replicas, up.Nodes)
	}

	t.Run("status", func(t *testing.T) {
		r := runBin(t, ns, "", "cluster", "status", "--dir", dir)
		if r.code != 0 || !strings.Contains(r.out, "cluster_state:ok  3 masters, 3 replicas, 16384/16384 slots") {
			t.Fatalf("status: %+v", r)
		}
		if got := strings.Count(r.out, "127.0.0.1:"); got < 6 {
			t.Fatalf("status lists %d node addresses:\n%s", got, r.out)
		}
		var st clusterUpJSON
		clusterJSON(t, runBin(t, ns, "", "cluster", "status", "--dir", dir, "-o", "json"), &st)
		roles := map[string]int{}
		for _, n := range st.Nodes {
			roles[n.Role]++
			if n.Health != "ok" || n.Pid != pids[n.Port] {
				t.Errorf("node %+v (pid want %d)", n, pids[n.Port])
			}
		}
		if len(st.Nodes) != 6 || roles["master"] != 3 || roles["replica"] != 3 || st.Masters != 3 {
			t.Fatalf("status: %d nodes, roles %v", len(st.Nodes), roles)
		}
		// The same through seeds instead of the state file: no pids then.
		var bySeed clusterUpJSON
		clusterJSON(t, runBin(t, ns, "", "--redis", "redis://127.0.0.1:"+strconv.Itoa(replicas[0]), "cluster", "status", "-o", "json"), &bySeed)
		if len(bySeed.Nodes) != 6 || bySeed.Masters != 3 || bySeed.Nodes[0].Pid != 0 {
			t.Fatalf("status by seed: %+v", bySeed)
		}
	})

	t.Run("channel walkthrough across nodes", func(t *testing.T) {
		urlA := "redis://127.0.0.1:" + strconv.Itoa(masters[0])
		sub := startProc(t, binary, "--redis", urlA, "channel", "subscribe", "mychannel", "--count", "1", "--no-raw")
		// The subscriber sits on exactly one node (a single-seed URL of a
		// cluster node still gives a cluster client).
		subNode := 0
		redistest.WaitFor(t, 15*time.Second, "the subscriber on one node", func() bool {
			on := 0
			for _, n := range up.Nodes {
				if numsubOn(t, n.Port, "mychannel") == 1 {
					on, subNode = on+1, n.Port
				}
			}
			return on == 1
		})
		portB := 0
		for _, n := range up.Nodes {
			if n.Port != subNode && n.Port != masters[0] {
				portB = n.Port
				break
			}
		}
		if numsubOn(t, portB, "mychannel") != 0 {
			t.Fatal("node B counts the subscriber itself")
		}
		urlB := "redis://127.0.0.1:" + strconv.Itoa(portB)
		r := runBin(t, ns, "", "--redis", urlB, "channel", "numsub", "mychannel", "--no-raw")
		if r.code != 0 || r.out != "1) \"mychannel\"\n2) (integer) 1\n" {
			t.Fatalf("numsub through node %d (subscriber on %d) did not sum over the nodes: %+v", portB, subNode, r)
		}
		if r := runBin(t, ns, "", "--redis", urlB, "channel", "publish", "mychannel", "Hello World!"); r.code != 0 {
			t.Fatalf("publish: %+v", r)
		}
		redistest.WaitFor(t, 10*time.Second, "the subscriber to print the message", func() bool { return sub.has(`3) "Hello World!"`) })
		if !sub.has(`1) "message"`) || !sub.has(`2) "mychannel"`) {
			t.Fatalf("subscriber printed:\n%s", sub.text())
		}
	})

	t.Run("doctor", func(t *testing.T) {
		var rep doctorJSON
		clusterJSON(t, runBin(t, ns, "", "--redis", up.URL, "doctor", "-o", "json"), &rep)
		if rep.Mode != "cluster" || rep.Nodes != 6 || rep.Errors != 0 || !rep.has("warn", "full-coverage") || !rep.has("ok", "persistence") ||
			!rep.has("ok", "replicas") || !rep.has("ok", "cluster-state") {
			t.Fatalf("doctor on the cluster: %+v", rep)
		}
	})

	t.Run("failover kill restart", func(t *testing.T) {
		r := runBin(t, ns, "", "cluster", "failover", strconv.Itoa(replicas[0]), "--dir", dir)
		if r.code != 0 || !strings.HasPrefix(r.out, "OK 127.0.0.1:"+strconv.Itoa(replicas[0])+" is master of slots ") {
			t.Fatalf("failover: %+v", r)
		}
		t.Log(strings.TrimSpace(r.out))
		r = runBin(t, ns, "", "cluster", "failover", strconv.Itoa(replicas[0]), "--dir", dir)
		if r.code != 2 || !strings.Contains(r.err, "is a master") {
			t.Fatalf("failover of a master: %+v", r)
		}
		oldMaster := 0
		for _, n := range up.Nodes {
			if n.Port == replicas[0] {
				oldMaster = portOf(n.Master)
			}
		}
		var st clusterUpJSON
		clusterJSON(t, runBin(t, ns, "", "cluster", "status", "--dir", dir, "-o", "json"), &st)
		for _, n := range st.Nodes {
			if n.Port == replicas[0] && n.Role != "master" || n.Port == oldMaster && n.Role != "replica" {
				t.Fatalf("after failover of %d (replica of %d): %+v", replicas[0], oldMaster, st.Nodes)
			}
		}
		victim := replicas[1]
		r = runBin(t, ns, "", "cluster", "kill", strconv.Itoa(victim), "--dir", dir)
		if r.code != 0 || !strings.Contains(r.out, "Killed 127.0.0.1:"+strconv.Itoa(victim)) || !clusterGoneSoon(pids[victim]) {
			t.Fatalf("kill: %+v", r)
		}
		clusterJSON(t, runBin(t, ns, "", "cluster", "status", "--dir", dir, "-o", "json"), &st)
		for _, n := range st.Nodes {
			if n.Port == victim && n.Health != "down" {
				t.Fatalf("killed node shows %+v", n)
			}
		}
		r = runBin(t, ns, "", "cluster", "restart", strconv.Itoa(victim), "--dir", dir)
		if r.code != 0 || !strings.Contains(r.out, "Restarted 127.0.0.1:"+strconv.Itoa(victim)) {
			t.Fatalf("restart: %+v", r)
		}
		clusterJSON(t, runBin(t, ns, "", "cluster", "status", "--dir", dir, "-o", "json"), &st)
		for _, n := range st.Nodes {
			if n.Health != "ok" {
				t.Fatalf("after restart: %+v", n)
			}
			if n.Port == victim {
				pids[victim] = n.Pid
			}
		}
	})

	stop := time.Now()
	r := runBin(t, ns, "", "cluster", "down", "--purge", "--dir", dir)
	if r.code != 0 || !strings.Contains(r.out, "Stopped 6 of 6 nodes") {
		t.Fatalf("down: %+v", r)
	}
	t.Logf("herald cluster down --purge took %v", time.Since(stop))
	var wg sync.WaitGroup // the processes wind down in parallel
	for port, pid := range pids {
		wg.Go(func() {
			if !clusterGoneSoon(pid) {
				t.Errorf("node %d (pid %d) still runs after down", port, pid)
			}
		})
	}
	wg.Wait()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("data directory left after down --purge: %v", err)
	}
}

func portOf(addr string) int {
	_, p, _ := strings.Cut(addr, ":")
	n, _ := strconv.Atoi(p)
	return n
}

// doctorJSON is what `herald doctor -o json` prints.
type doctorJSON struct {
	Mode     string `json:"mode"`
	Nodes    int    `json:"nodes"`
	Errors   int    `json:"errors"`
	Warnings int    `json:"warnings"`
	Findings []struct {
		Level, Check, Message, Fix string
	} `json:"findings"`
}

func (d doctorJSON) has(level, check string) bool {
	for _, f := range d.Findings {
		if f.Level == level && f.Check == check {
			return true
		}
	}
	return false
}

// doctorRun runs `herald doctor -o json` on url, whatever its exit code.
func doctorRun(t *testing.T, ns, url string) (doctorJSON, result) {
	t.Helper()
	r := runBin(t, ns, "", "--redis", url, "doctor", "-o", "json")
	var rep doctorJSON
	if err := json.Unmarshal([]byte(r.out), &rep); err != nil {
		t.Fatalf("doctor printed %q (%v); stderr %q", r.out, err, r.err)
	}
	return rep, r
}

func TestDoctorStandalone(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)

	// The shared test server: no persistence, no replica, noeviction.
	r := runBin(t, ns, "", "doctor")
	if r.code != 0 || !strings.Contains(r.out, "WARN  persistence") || !strings.Contains(r.out, "fix: CONFIG SET appendonly yes") ||
		!strings.Contains(r.out, "0 error(s), 2 warning(s)") {
		t.Fatalf("doctor on the shared server: %+v", r)
	}
	var rep doctorJSON
	clusterJSON(t, runBin(t, ns, "", "doctor", "-o", "json"), &rep)
	if rep.Mode != "standalone" || rep.Nodes != 1 || rep.Errors != 0 || rep.Warnings != 2 || !rep.has("ok", "version") ||
		!rep.has("ok", "maxmemory-policy") || !rep.has("warn", "persistence") || !rep.has("warn", "replicas") {
		t.Fatalf("doctor JSON: %+v", rep)
	}

	// An evicting server with AOF is an error: exit 1, with the fix.
	lru := redistest.Own(t, redisproc.Options{AppendOnly: true, Args: []string{"--maxmemory-policy", "allkeys-lru"}})
	r = runBin(t, ns, "", "--redis", lru.URL(), "doctor")
	if r.code != 1 || !strings.Contains(r.out, "ERROR  maxmemory-policy  maxmemory-policy is allkeys-lru") ||
		!strings.Contains(r.out, "fix: CONFIG SET maxmemory-policy noeviction") || !strings.Contains(r.out, "OK     persistence       AOF on") ||
		!strings.Contains(r.err, "doctor found 1 error(s)") {
		t.Fatalf("doctor on an evicting server: %+v", r)
	}

	// A replica named as the deployment is an error; its master sees a replica.
	rep2 := redistest.Own(t, redisproc.Options{Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(lru.Port)}})
	redistest.WaitFor(t, 10*time.Second, "the replica to link", func() bool {
		out, _ := exec.Command("redis-cli", "-p", strconv.Itoa(rep2.Port), "INFO", "replication").Output()
		return strings.Contains(string(out), "master_link_status:up")
	})
	rep, r = doctorRun(t, ns, rep2.URL())
	if r.code != 1 || !rep.has("error", "replicas") || rep.Errors != 1 {
		t.Fatalf("doctor on a replica: exit %d %+v", r.code, rep)
	}
	rep, r = doctorRun(t, ns, lru.URL())
	if r.code != 1 || !rep.has("ok", "replicas") || !rep.has("error", "maxmemory-policy") {
		t.Fatalf("doctor on a master with a replica: exit %d %+v", r.code, rep)
	}
}

func TestClusterAndDoctorBadInputExitTwo(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	empty := t.TempDir()
	cases := []struct {
		name, want string
		args       []string
	}{
		{"masters zero", "--masters 0 out of range", []string{"cluster", "up", "--masters", "0", "--dir", empty}},
		{"replicas negative", "--replicas -1 out of range", []string{"cluster", "up", "--replicas", "-1", "--dir", empty}},
		{"privileged port", "--port 80 out of range", []string{"cluster", "up", "--port", "80", "--dir", empty}},
		{"empty dir", "--dir is empty", []string{"cluster", "up", "--dir", ""}},
		{"bad node", "is not a port or host:port", []string{"cluster", "failover", "seven", "--dir", empty}},
		{"remote kill", "acts only on local nodes", []string{"cluster", "kill", "10.0.0.1:7001", "--dir", empty}},
		{"kill without state", "holds no cluster state", []string{"cluster", "kill", "7001", "--dir", empty}},
		{"status without state", "no cluster state in", []string{"cluster", "status", "--dir", empty}},
		{"down without state", "nothing to stop", []string{"cluster", "down", "--dir", empty}},
		{"status of a standalone", "is not a cluster", []string{"cluster", "status"}},
		{"doctor malformed url", "Redis URL", []string{"--redis", "http//nope", "doctor"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, ns, "", tc.args...)
			if r.code != 2 || !strings.Contains(r.err, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", r.code, r.err, tc.want)
			}
		})
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("refused commands left %d files in the directory", len(entries))
	}
	// Nothing listening: an error finding and exit 1, not a usage error.
	free, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := runBin(t, ns, "", "--redis", "redis://127.0.0.1:"+strconv.Itoa(free), "doctor")
	if r.code != 1 || !strings.Contains(r.out, "ERROR  connect") {
		t.Fatalf("doctor without a server: %+v", r)
	}
}

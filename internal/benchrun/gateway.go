package benchrun

// herald bench gateway: a `herald serve` child, N SSE clients in this
// process (live tails, or group sessions), events published through the
// gateway at a fixed rate; it reports what was missing, the publish-to-
// client latency, and what the server used (RSS, goroutines, Redis clients).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heraldbus/herald/internal/redisproc"
)

// GatewayConfig configures RunGateway.
type GatewayConfig struct {
	// Binary is the herald executable started as `herald serve`.
	Binary string
	// RedisURL is the Redis the server uses; empty starts a redis-server
	// for the run.
	RedisURL string
	// Clients is the number of SSE clients (default 1000).
	Clients int
	// TopicPartitions of the benchmark topic (default 8).
	TopicPartitions int
	// Rate is the events published per second (default 10).
	Rate int
	// Duration of publishing (default 30s).
	Duration time.Duration
	// Group, when set, makes the clients group sessions (ack=auto) of
	// Groups groups named Group-0..Group-(Groups-1), spread evenly.
	Group  string
	Groups int
	// Drain is how long to wait for the last deliveries after publishing (default 5s).
	Drain time.Duration
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// GatewayResult is what RunGateway measured; the JSON names are those
// `herald bench gateway --output json` prints.
type GatewayResult struct {
	Clients            int     `json:"clients"`
	Mode               string  `json:"mode"` // tail or group
	Groups             int     `json:"groups,omitempty"`
	TopicPartitions    int     `json:"topic_partitions"`
	Rate               int     `json:"rate"`
	DurationS          float64 `json:"duration_s"`
	EventsPublished    int64   `json:"events_published"`
	DeliveriesExpected int64   `json:"deliveries_expected"`
	DeliveriesMissing  int64   `json:"deliveries_missing"`
	DeliveriesDup      int64   `json:"deliveries_duplicate"`
	LatencyP50ms       float64 `json:"latency_p50_ms"`
	LatencyP99ms       float64 `json:"latency_p99_ms"`
	LatencyMaxms       float64 `json:"latency_max_ms"`
	ServerRSSMB        float64 `json:"server_rss_mb"`
	ServerPeakRSSMB    float64 `json:"server_peak_rss_mb"`
	ServerGoroutines   int     `json:"server_goroutines"`
	RedisClients       int     `json:"redis_clients"`
	ConnectS           float64 `json:"connect_s"`
	ServerCPUs         float64 `json:"server_cpu_s"` // the child's CPU time while publishing and draining
	ClientCPUs         float64 `json:"client_cpu_s"` // this process's (the SSE clients and the publisher)
	CPUs               int     `json:"cpus"`
}

func (c *GatewayConfig) fill() error {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.Clients, 1000)
	def(&c.TopicPartitions, 8)
	def(&c.Rate, 10)
	def(&c.Groups, 1)
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 5 * time.Second
	}
	if c.Clients < 1 || c.TopicPartitions < 1 || c.Rate < 1 || c.Groups < 1 || c.Duration <= 0 {
		return errors.New("--clients, --topic-partitions, --rate, --groups and --duration must be positive")
	}
	if c.Group == "" && c.Groups > 1 {
		return errors.New("--groups needs --group NAME")
	}
	if c.Binary == "" {
		return errors.New("no herald binary to run as the server")
	}
	return nil
}

func (c *GatewayConfig) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "herald bench gateway: "+format+"\n", args...)
	}
}

// RunGateway runs the gateway benchmark.
func RunGateway(ctx context.Context, cfg GatewayConfig) (GatewayResult, error) {
	var res GatewayResult
	if err := cfg.fill(); err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "herald-bench-gateway-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	redisURL, redisAddr := cfg.RedisURL, ""
	if redisURL == "" {
		rs, err := redisproc.Start(ctx, redisproc.Options{Args: []string{"--maxclients", "20000"}})
		if err != nil {
			return res, fmt.Errorf("start a redis-server: %w", err)
		}
		defer func() { _ = rs.Stop() }()
		redisURL, redisAddr = rs.URL(), rs.Addr()
	}
	srv, err := startServeChild(ctx, cfg, dir, redisURL)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	cfg.logf("server pid %d at %s", srv.cmd.Process.Pid, srv.url)
	hc := &http.Client{Timeout: 30 * time.Second}
	topic := fmt.Sprintf("bench-gw-%d", time.Now().UnixNano())
	body := fmt.Sprintf(`{"partitions":%d}`, cfg.TopicPartitions)
	if err := httpDo(ctx, hc, "PUT", srv.url+"/v1/topics/"+topic, body); err != nil {
		return res, fmt.Errorf("create the topic: %w", err)
	}
	total := int(cfg.Duration.Seconds() * float64(cfg.Rate))
	clients := make([]*sseBenchClient, cfg.Clients)
	host := strings.TrimPrefix(srv.url, "http://")
	connectStart := time.Now()
	var wg sync.WaitGroup
	cctx, cancelClients := context.WithCancel(ctx)
	defer cancelClients()
	connErr := make(chan error, 1)
	var connected atomic.Int64
	// Where the platform allows, streams are read by a few epoll loops
	// instead of a goroutine each: one read system call per delivery, so
	// the clients leave the server more of the machine.
	pool, _ := newEpollPool(2)
	poolDone := make(chan struct{})
	if pool != nil {
		defer pool.close()
		go func() { pool.run(cctx); close(poolDone) }()
	} else {
		close(poolDone)
	}
	sem := make(chan struct{}, 64) // connects in flight
	for i := range clients {
		path := "/v1/topics/" + topic + "/events"
		group := -1
		if cfg.Group != "" {
			group = i % cfg.Groups
			path += fmt.Sprintf("?group=%s-%d&ack=auto&window=64", cfg.Group, group)
		}
		expect := total // deliveries this client should get
		if cfg.Group != "" {
			expect = total*cfg.Groups/cfg.Clients + 16
		}
		cl := &sseBenchClient{group: group, seen: make([]byte, total), lat: make([]int32, 0, expect)}
		clients[i] = cl
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := cl.run(cctx, host, path, pool, func() { <-sem; connected.Add(1) })
			if err != nil && cctx.Err() == nil {
				select {
				case connErr <- err:
				default:
				}
			}
		}()
		select {
		case err := <-connErr:
			return res, fmt.Errorf("client %d: %w", i, err)
		default:
		}
	}
	for connected.Load() < int64(cfg.Clients) {
		select {
		case err := <-connErr:
			return res, fmt.Errorf("a client: %w", err)
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.ConnectS = time.Since(connectStart).Seconds()
	cfg.logf("%d clients connected in %.1fs; publishing %d events/s for %s", cfg.Clients, res.ConnectS, cfg.Rate, cfg.Duration)
	time.Sleep(time.Second) // sessions join their feeds
	srvCPU0, cliCPU0 := procCPU(srv.cmd.Process.Pid), processCPU()
	// Publish at the rate, through the gateway, one event per request.
	tick := time.NewTicker(time.Second / time.Duration(cfg.Rate))
	var published int64
	pubErrs := 0
	for n := 0; n < total; n++ {
		<-tick.C
		ev := fmt.Sprintf(`{"key":"k%d","data":{"n":%d,"t":%d}}`, n, n, time.Now().UnixNano())
		if err := httpDo(ctx, hc, "POST", srv.url+"/v1/topics/"+topic+"/events", ev); err != nil {
			pubErrs++
			cfg.logf("publish %d: %v", n, err)
			if pubErrs > 10 {
				return res, fmt.Errorf("publishing: %w", err)
			}
			continue
		}
		published++
	}
	tick.Stop()
	// Wait for the last deliveries (or the drain time).
	want := published * int64(cfg.Clients)
	if cfg.Group != "" {
		want = published * int64(cfg.Groups)
	}
	deadline := time.Now().Add(cfg.Drain)
	for time.Now().Before(deadline) {
		var got int64
		for _, cl := range clients {
			got += cl.received.Load()
		}
		if got >= want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.ServerCPUs = (procCPU(srv.cmd.Process.Pid) - srvCPU0).Seconds()
	res.ClientCPUs = (processCPU() - cliCPU0).Seconds()
	// What the server uses, with every client connected.
	res.ServerRSSMB, res.ServerPeakRSSMB = procRSS(srv.cmd.Process.Pid)
	res.ServerGoroutines = metricInt(ctx, hc, srv.url+"/metrics", "go_goroutines")
	if redisAddr == "" {
		if u, err := url.Parse(redisURL); err == nil {
			redisAddr = u.Host
		}
	}
	res.RedisClients = -1
	if out, err := redisproc.Command(redisAddr, 5*time.Second, "CLIENT", "LIST"); err == nil {
		res.RedisClients = strings.Count(out, "id=") - 1 // not the CLIENT LIST connection itself
	}
	cancelClients()
	for _, cl := range clients {
		cl.close()
	}
	wg.Wait()
	<-poolDone // the epoll loops have stopped: the clients' records are final
	// Count.
	res.Clients, res.TopicPartitions, res.Rate, res.DurationS = cfg.Clients, cfg.TopicPartitions, cfg.Rate, cfg.Duration.Seconds()
	res.EventsPublished, res.DeliveriesExpected = published, want
	res.Mode, res.CPUs = "tail", runtime.NumCPU()
	var lat []int32
	if cfg.Group == "" {
		for _, cl := range clients {
			for n := range published {
				switch cl.seen[n] {
				case 0:
					res.DeliveriesMissing++
				case 1:
				default:
					res.DeliveriesDup += int64(cl.seen[n]) - 1
				}
			}
			lat = append(lat, cl.lat...)
		}
	} else {
		res.Mode, res.Groups = "group", cfg.Groups
		perGroup := make([][]int, cfg.Groups)
		for g := range perGroup {
			perGroup[g] = make([]int, total)
		}
		for _, cl := range clients {
			for n := range published {
				perGroup[cl.group][n] += int(cl.seen[n])
			}
			lat = append(lat, cl.lat...)
		}
		for g := range perGroup {
			for n := range published {
				switch k := perGroup[g][n]; {
				case k == 0:
					res.DeliveriesMissing++
				case k > 1:
					res.DeliveriesDup += int64(k - 1)
				}
			}
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		q := func(p float64) float64 { return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1000 }
		res.LatencyP50ms, res.LatencyP99ms, res.LatencyMaxms = q(0.50), q(0.99), float64(lat[len(lat)-1])/1000
	}
	return res, nil
}

// serveChild is the `herald serve` process of the benchmark.
type serveChild struct {
	cmd    *exec.Cmd
	url    string
	exited chan struct{}
}

func startServeChild(ctx context.Context, cfg GatewayConfig, dir, redisURL string) (*serveChild, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	conf := filepath.Join(dir, "herald.yaml")
	yaml := fmt.Sprintf("listen: %s\nredis: %q\nlog_level: warn\nlimits:\n  max_streams: %d\n  max_streams_per_addr: %d\n  max_sessions: %d\n",
		addr, redisURL, cfg.Clients+100, cfg.Clients+100, cfg.Clients+100)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.Binary, "serve", "--config", conf, "--data-dir", filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), "HERALD_REDIS_URL=", "HERALD_LISTEN=")
	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s serve: %w", cfg.Binary, err)
	}
	s := &serveChild{cmd: cmd, url: "http://" + addr, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(s.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			b, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			return nil, fmt.Errorf("herald serve exited at start: %s", b)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("herald serve did not answer /healthz within 20s")
		}
	}
}

// stop ends the child by its pid: SIGTERM, then SIGKILL.
func (s *serveChild) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func httpDo(ctx context.Context, hc *http.Client, method, url, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	return nil
}

// procCPU is the CPU time (user + system) process pid has used so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s) // f[0] is the state (field 3): utime and stime are fields 14 and 15
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / 100 // clock ticks (USER_HZ 100)
}

// procRSS is the resident and peak resident memory of pid in MB.
func procRSS(pid int) (rss, peak float64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1, -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}

// metricInt reads an unlabelled metric from a Prometheus text page.
func metricInt(ctx context.Context, hc *http.Client, url, name string) int {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f)
		}
	}
	return -1
}

// PrintGateway writes res as text, one field a line, with the JSON names.
func (res GatewayResult) PrintGateway(w io.Writer) {
	fmt.Fprintf(w, "herald bench gateway: %d %s clients, topic of %d partitions, %d events/s for %gs, %d CPUs\n",
		res.Clients, res.Mode, res.TopicPartitions, res.Rate, res.DurationS, res.CPUs)
	if res.Mode == "group" {
		fmt.Fprintf(w, "groups                %d (each event once per group)\n", res.Groups)
	}
	fmt.Fprintf(w, "clients               %d\n", res.Clients)
	fmt.Fprintf(w, "events_published      %d\n", res.EventsPublished)
	fmt.Fprintf(w, "deliveries_expected   %d\n", res.DeliveriesExpected)
	fmt.Fprintf(w, "deliveries_missing    %d\n", res.DeliveriesMissing)
	fmt.Fprintf(w, "deliveries_duplicate  %d\n", res.DeliveriesDup)
	fmt.Fprintf(w, "latency_p50_ms        %.1f\n", res.LatencyP50ms)
	fmt.Fprintf(w, "latency_p99_ms        %.1f\n", res.LatencyP99ms)
	fmt.Fprintf(w, "latency_max_ms        %.1f\n", res.LatencyMaxms)
	fmt.Fprintf(w, "server_rss_mb         %.1f (peak %.1f)\n", res.ServerRSSMB, res.ServerPeakRSSMB)
	fmt.Fprintf(w, "server_goroutines     %d\n", res.ServerGoroutines)
	fmt.Fprintf(w, "redis_clients         %d\n", res.RedisClients)
	fmt.Fprintf(w, "connect_s             %.1f\n", res.ConnectS)
	fmt.Fprintf(w, "server_cpu_s          %.1f (publishing and draining)\n", res.ServerCPUs)
	fmt.Fprintf(w, "client_cpu_s          %.1f (this process: clients and publisher)\n", res.ClientCPUs)
}

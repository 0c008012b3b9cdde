package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/redistest"
)

// serveProc is a `herald serve` process started by a test.
type serveProc struct {
	cmd    *exec.Cmd
	url    string
	stderr *syncBuffer
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr is the listen address for a child herald serve: loopback, port
// 0, so the child binds a free port itself and prints it ("listening on",
// read into serveProc.url). A port picked here, closed and handed to the
// child could be taken by a parallel test in between.
func freeAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:0"
}

// startServe runs the built binary in dir with env added, and waits for
// its "listening on" line. The process is killed by its pid at the end of
// the test if it is still running.
func startServe(t *testing.T, dir string, env []string, args ...string) *serveProc {
	t.Helper()
	p, err := tryStartServe(t, dir, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tryStartServe is startServe that returns an error, with the process's
// stderr, when herald serve exits or prints no "listening on" line.
func tryStartServe(t *testing.T, dir string, env []string, args ...string) (*serveProc, error) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve"}, args...)...)
	cmd.Dir = dir
	base := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") || strings.HasPrefix(kv, "HERALD_REQUIRE_REDIS") {
			base = append(base, kv)
		}
	}
	base = append(base, env...)
	cmd.Env = base
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &serveProc{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		select {
		case err := <-p.exited:
			_ = err // the exit status is checked where it matters (stop)
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-p.exited:
				_ = err // the exit status is checked where it matters (stop)
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		p.exited <- cmd.Wait()
		close(p.exited)
	}()
	select {
	case l, ok := <-lines:
		if !ok { // stdout closed: the process is exiting; wait for all its stderr
			var exitErr error
			select {
			case exitErr = <-p.exited:
			case <-time.After(10 * time.Second):
			}
			return nil, fmt.Errorf("herald serve exited before it listened (%v); stderr:\n%s", exitErr, p.stderr.String())
		}
		_, rest, ok := strings.Cut(l, "listening on ")
		if !ok {
			return nil, fmt.Errorf("unexpected first line %q", l)
		}
		p.url = strings.Fields(rest)[0]
	case <-time.After(20 * time.Second):
		return nil, fmt.Errorf("herald serve did not start; stderr:\n%s", p.stderr.String())
	}
	return p, nil
}

// stop sends SIGTERM to the process's pid and waits for a clean exit.
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("herald serve exited with %v; stderr:\n%s", err, p.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("herald serve did not exit within 30s of SIGTERM; stderr:\n%s", p.stderr.String())
	}
}

func managedPid(t *testing.T, dataDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "managed-redis.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Pid int }
	_ = json.Unmarshal(b, &st)
	return st.Pid
}

func isRedis(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(b), "redis-server")
}

// TestServeNoFlags: `herald serve` with no flags (the listen address from
// the environment, so the test can pick a free port) starts a managed
// redis-server in ./herald-data; an HTTP publish (curl -d) reaches an SSE
// subscriber (curl -N); SIGTERM stops both processes.
func TestServeNoFlags(t *testing.T) {
	t.Parallel()
	redistest.Skip(t)
	dir := t.TempDir()
	p := startServe(t, dir, []string{"HERALD_LISTEN=" + freeAddr(t)})
	dataDir := filepath.Join(dir, "herald-data")
	pid := managedPid(t, dataDir)
	if !isRedis(pid) {
		t.Fatalf("managed redis-server %d is not running", pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// curl -N "$URL/v1/topics/greetings/events?group=demo"
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/v1/topics/greetings/events?group=demo", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "event: session") {
	}
	// curl -d 'hello from curl' "$URL/v1/topics/greetings/events"
	presp, err := http.Post(p.url+"/v1/topics/greetings/events", "application/x-www-form-urlencoded", strings.NewReader("hello from curl"))
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := io.ReadAll(presp.Body)
	presp.Body.Close()
	if presp.StatusCode != 200 || !strings.Contains(string(pb), `"position":"0/`) {
		t.Fatalf("publish: %d %s", presp.StatusCode, pb)
	}
	got, inEvent := "", false
	for sc.Scan() {
		inEvent = inEvent || strings.HasPrefix(sc.Text(), "id: ")
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok && inEvent {
			got = d
			break
		}
	}
	if !strings.Contains(got, `"data":"hello from curl"`) {
		t.Fatalf("SSE subscriber got %q", got)
	}
	p.stop(t)
	if isRedis(pid) {
		t.Fatalf("managed redis-server %d still running after herald serve exited", pid)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "appendonlydir")); err != nil {
		t.Fatalf("no AOF in the data directory: %v", err)
	}
}

// TestServeSIGTERMUnderLoad: 1,000 events are published in a steady stream
// while a webhook delivers them slowly; SIGTERM in the middle; after a
// restart on the same data directory every event is delivered (acked
// before the shutdown, or redelivered after it) and none is pending.
func TestServeSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	redistest.Skip(t)
	const total, batch = 1000, 50
	var slow atomic.Bool
	slow.Store(true)
	var mu sync.Mutex
	seen := map[string]int{}
	target := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ce struct{ ID string }
		_ = json.NewDecoder(r.Body).Decode(&ce)
		if slow.Load() {
			time.Sleep(50 * time.Millisecond) // a slow webhook target: handler work, not a condition
		}
		mu.Lock()
		seen[ce.ID]++
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = target.Serve(tl) }()
	defer target.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`webhooks:
  - name: sink
    topic: load
    url: http://%s/hook
    concurrency: 8
    max_in_flight: 64
    backoff: 50ms
    max_backoff: 500ms
    max_attempts: 100
shutdown_timeout: 20s
`, tl.Addr())
	_ = os.WriteFile(filepath.Join(dir, "herald.yaml"), []byte(cfg), 0o600)
	p := startServe(t, dir, nil, "--listen", freeAddr(t), "--config", "herald.yaml")
	var base atomic.Pointer[string] // where the publisher posts; moves only if the restart needs a new port
	base.Store(&p.url)

	// The publisher: batches of 50 with event ids, every 20 ms; a batch
	// that fails (the server is down) is sent again until it is stored.
	var published atomic.Int64
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		client := &http.Client{Timeout: 5 * time.Second}
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; i < total; i += batch {
			var evs []string
			for k := i; k < i+batch; k++ {
				evs = append(evs, fmt.Sprintf(`{"id":"ev-%04d","data":{"n":%d}}`, k, k))
			}
			body := "[" + strings.Join(evs, ",") + "]"
			for time.Now().Before(deadline) {
				resp, err := client.Post(*base.Load()+"/v1/topics/load/events", "application/json", strings.NewReader(body))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						published.Add(batch)
						break
					}
				}
				time.Sleep(50 * time.Millisecond) // retry pacing while the server restarts
			}
			time.Sleep(20 * time.Millisecond) // publishing pace, not a condition
		}
	}()
	// SIGTERM once most events are published and many are not delivered yet.
	redistest.WaitFor(t, 60*time.Second, "950 events published", func() bool { return published.Load() >= 950 })
	mu.Lock()
	before := len(seen)
	mu.Unlock()
	pid := managedPid(t, dir+"/herald-data")
	p.stop(t)
	if isRedis(pid) {
		t.Fatalf("managed redis-server %d still running after herald serve exited", pid)
	}
	mu.Lock()
	atStop := len(seen)
	mu.Unlock()
	t.Logf("SIGTERM with %d published, %d delivered (%d at the signal)", published.Load(), atStop, before)
	if int64(atStop) >= published.Load() {
		t.Fatalf("everything published was delivered before the shutdown ended; the test did not shut down under load")
	}
	slow.Store(false)
	// The restart listens where the first run did (the publisher retries
	// there); if a parallel test took that port meanwhile, on a fresh one,
	// and the publisher follows.
	p2, err := tryStartServe(t, dir, nil, "--listen", strings.TrimPrefix(p.url, "http://"), "--config", "herald.yaml")
	if err != nil {
		if !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("the first run's port was taken meanwhile; restarting on a fresh one (%v)", err)
		p2 = startServe(t, dir, nil, "--listen", freeAddr(t), "--config", "herald.yaml")
		base.Store(&p2.url)
	}
	<-pubDone
	if published.Load() != total {
		t.Fatalf("published %d of %d", published.Load(), total)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of %d after the restart", n, total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dups := 0
	mu.Lock()
	for _, c := range seen {
		dups += c - 1
	}
	mu.Unlock()
	t.Logf("all %d delivered; %d redelivered twice (at-least-once)", total, dups)
	// Nothing pending, nothing left to deliver.
	for {
		resp, err := http.Get(p2.url + "/v1/topics/load/groups")
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Groups []struct {
				Name         string
				Pending, Lag int64
			}
		}
		_ = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if len(r.Groups) == 1 && r.Groups[0].Pending == 0 && r.Groups[0].Lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("groups after delivery: %+v", r.Groups)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p2.stop(t)
}

// cleanEnv is the environment without HERALD_* variables (but the test switches).
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") || strings.HasPrefix(kv, "HERALD_REQUIRE_REDIS") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// TestServeNonLoopbackWithoutKeysExits2: `herald serve --listen 0.0.0.0:PORT`
// without API keys exits 2 at once, saying how to add a key or pass
// --insecure; nothing is started.
func TestServeNonLoopbackWithoutKeysExits2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(binary, "serve", "--listen", "0.0.0.0:0", "--engine", "memory")
	cmd.Dir, cmd.Env = dir, cleanEnv()
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want 2; stderr: %s", err, errb.String())
	}
	for _, want := range []string{"keys:", "--insecure", "127.0.0.1:8080"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("the message does not say %q: %s", want, errb.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "herald-data")); err == nil {
		t.Fatal("a data directory was made: something started")
	}
}

// TestServeDefaultListenIsLoopback: without --listen herald serve prints
// and listens on 127.0.0.1:8080 (skipped when that port is taken).
func TestServeDefaultListenIsLoopback(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		t.Skip("127.0.0.1:8080 is in use here")
	}
	l.Close()
	p, err := tryStartServe(t, t.TempDir(), []string{"HERALD_ENGINE=memory"})
	if err != nil && strings.Contains(err.Error(), "address already in use") {
		t.Skip("127.0.0.1:8080 was taken meanwhile")
	}
	if err != nil {
		t.Fatal(err)
	}
	if p.url != "http://127.0.0.1:8080" {
		t.Fatalf("listening on %s, want http://127.0.0.1:8080", p.url)
	}
	if c, err := net.DialTimeout("tcp", externalIP(t)+":8080", time.Second); err == nil {
		c.Close()
		t.Fatal("the default listener answers on a non-loopback address")
	}
	p.stop(t)
}

// externalIP is a non-loopback address of this machine (the test skips without one).
func externalIP(t *testing.T) string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Skip("no non-loopback address")
	return ""
}

// TestCommandsFindManagedRedis: herald commands run in the directory of a
// herald serve with a managed redis-server (no --redis) reach it, password
// and all: an event published over HTTP is listed by `herald events`.
func TestCommandsFindManagedRedis(t *testing.T) {
	redistest.Skip(t)
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, dir, []string{"HERALD_LISTEN=" + freeAddr(t)})
	resp, err := http.Post(p.url+"/v1/topics/found/events", "text/plain", strings.NewReader("hello managed"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	cmd := exec.Command(binary, "events", "found", "-o", "json")
	cmd.Dir, cmd.Env = dir, cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello managed") {
		t.Fatalf("herald events in the serve directory: %v\n%s", err, out)
	}
	p.stop(t)
}

// TestServeTwoProcessesShareGroups: two herald serve processes on one
// Redis. An SSE group client reads part of a topic from the first, which
// is then stopped (SIGTERM); the client reconnects to the second with
// Last-Event-ID and gets the rest with no gap. A webhook configured on
// both gets each event once (redeliveries counted, none missing).
func TestServeTwoProcessesShareGroups(t *testing.T) {
	redistest.Skip(t)
	t.Parallel()
	ns := redistest.Namespace(t)
	var mu sync.Mutex
	hooked := map[string]int{}
	target := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ce struct{ ID string }
		_ = json.NewDecoder(r.Body).Decode(&ce)
		mu.Lock()
		hooked[ce.ID]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = target.Serve(tl) }()
	defer target.Close()
	conf := filepath.Join(t.TempDir(), "herald.yaml")
	_ = os.WriteFile(conf, []byte("webhooks:\n  - name: shared\n    topic: two\n    url: http://"+tl.Addr().String()+"/\n    from: beginning\n"), 0o600)
	env := []string{"HERALD_REDIS_URL=" + redistest.URL(t), "HERALD_NAMESPACE=" + ns, "HERALD_CONFIG=" + conf}
	a := startServe(t, t.TempDir(), append(env, "HERALD_LISTEN="+freeAddr(t)))
	b := startServe(t, t.TempDir(), append(env, "HERALD_LISTEN="+freeAddr(t)))

	const total, firstRead = 40, 15
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	open := func(base, lastID string) (*bufio.Scanner, func()) {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/topics/two/events?group=g&client=mover&window=8&from=beginning", nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("SSE on %s: %v %v", base, err, resp)
		}
		return bufio.NewScanner(resp.Body), func() { resp.Body.Close() }
	}
	// next returns the next event's id and payload number.
	next := func(sc *bufio.Scanner) (string, int) {
		id := ""
		for sc.Scan() {
			l := sc.Text()
			if v, ok := strings.CutPrefix(l, "id: "); ok {
				id = v
			}
			if d, ok := strings.CutPrefix(l, "data: "); ok && id != "" {
				var ev struct{ Data struct{ N int } }
				_ = json.Unmarshal([]byte(d), &ev)
				return id, ev.Data.N
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return "", 0
	}
	ack := func(base, id string) {
		resp, err := http.Post(base+"/v1/topics/two/groups/g/ack", "application/json", strings.NewReader(`{"client":"mover","up_to":"`+id+`"}`))
		if err == nil {
			resp.Body.Close()
		}
	}
	sc, closeA := open(a.url, "")
	var batch []string
	for i := range total {
		batch = append(batch, fmt.Sprintf(`{"data":{"n":%d}}`, i))
	}
	resp, err := http.Post(a.url+"/v1/topics/two/events", "application/json", strings.NewReader("["+strings.Join(batch, ",")+"]"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("publish: %v %v", err, resp)
	}
	resp.Body.Close()
	seen := map[int]int{}
	lastID := ""
	for range firstRead {
		id, n := next(sc)
		seen[n]++
		lastID = id
		ack(a.url, id)
	}
	closeA()
	a.stop(t)
	sc, closeB := open(b.url, lastID)
	defer closeB()
	for len(seen) < total {
		id, n := next(sc)
		seen[n]++
		ack(b.url, id)
	}
	// The webhook: every event once across the two processes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		missing, dups := 0, 0
		for _, k := range hooked {
			dups += k - 1
		}
		missing = total - len(hooked)
		mu.Unlock()
		if missing == 0 {
			t.Logf("webhook: %d events, %d redeliveries", total, dups)
			if dups > total/10 {
				t.Fatalf("webhook: %d redeliveries of %d events", dups, total)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook: %d of %d events never POSTed", missing, total)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

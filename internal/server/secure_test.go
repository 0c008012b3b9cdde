package server_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
	"github.com/heraldbus/herald/internal/server"
)

func noEnv(string) string { return "" }

// TestDefaultListenIsLoopback: with no listen address given, herald serve
// listens on 127.0.0.1:8080 only.
func TestDefaultListenIsLoopback(t *testing.T) {
	t.Parallel()
	cfg, err := server.Load("", noEnv, server.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || !server.Loopback(cfg.Listen) {
		t.Fatalf("default listen %q: want 127.0.0.1:8080 (loopback)", cfg.Listen)
	}
}

// TestNonLoopbackWithoutKeysRefused: a non-loopback address without API
// keys is bad input (exit 2 in the CLI) naming the fixes, unless Insecure;
// with a key it is accepted.
func TestNonLoopbackWithoutKeysRefused(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{":8080", "0.0.0.0:8080", "[::]:8080", "10.1.2.3:8080"} {
		_, err := server.Load("", noEnv, server.Overrides{Listen: &addr})
		if !errors.Is(err, herald.ErrInvalid) || !strings.Contains(err.Error(), "keys:") || !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("listen %s without keys: %v; want ErrInvalid saying how to add a key or pass --insecure", addr, err)
		}
		yes := true
		if _, err := server.Load("", noEnv, server.Overrides{Listen: &addr, Insecure: &yes}); err != nil {
			t.Errorf("listen %s with --insecure: %v", addr, err)
		}
		if _, err := server.Load("", func(k string) string {
			if k == "HERALD_INSECURE" {
				return "true"
			}
			return ""
		}, server.Overrides{Listen: &addr}); err != nil {
			t.Errorf("listen %s with HERALD_INSECURE=true: %v", addr, err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "herald.yaml")
	_ = os.WriteFile(path, []byte("listen: 0.0.0.0:8080\nkeys:\n  - name: a\n    sha256: "+strings.Repeat("ab", 32)+"\n    publish: [\"*\"]\n"), 0o600)
	if _, err := server.Load(path, noEnv, server.Overrides{}); err != nil {
		t.Fatalf("non-loopback with a key: %v", err)
	}
	for _, addr := range []string{"127.0.0.1:1", "localhost:1", "[::1]:1", "127.9.9.9:1"} {
		if !server.Loopback(addr) {
			t.Errorf("%s is loopback", addr)
		}
	}
}

// TestLoopbackServerChecksHost: the server sets the Host check on a
// loopback listener: a rebound name is refused, 127.0.0.1 answers.
func TestLoopbackServerChecksHost(t *testing.T) {
	t.Parallel()
	eng := server.EngineMemory
	s := start(t, load(t, server.Overrides{Engine: &eng}))
	req, _ := http.NewRequest("GET", s.URL()+"/v1/topics", nil)
	req.Host = "evil.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("Host evil.example: %d, want 421", resp.StatusCode)
	}
	if code, b := get(t, s.URL()+"/v1/topics"); code != 200 {
		t.Fatalf("Host 127.0.0.1: %d %s", code, b)
	}
}

// TestManagedRedisRequiresPassword: the managed redis-server refuses an
// unauthenticated PING; its password is in a 0600 file of the data
// directory, and ManagedURL (what herald commands use) finds it.
func TestManagedRedisRequiresPassword(t *testing.T) {
	redisprocOrSkip(t)
	t.Parallel()
	dir := t.TempDir()
	eng := server.EngineManaged
	s := start(t, load(t, server.Overrides{Engine: &eng, DataDir: &dir}))
	u, ok := server.ManagedURL(dir)
	if !ok {
		t.Fatal("ManagedURL found no running managed redis-server")
	}
	addr := u[strings.LastIndex(u, "@")+1:]
	if err := redisproc.Ping(addr, time.Second); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("unauthenticated PING: %v, want NOAUTH", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "redis-password"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file mode %v, want 0600", fi.Mode().Perm())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code, b := post(t, s.URL()+"/v1/topics/authed/events", "x"); code != 200 {
		t.Fatalf("publish: %d %s", code, b)
	}
	c, err := herald.New(ctx, herald.Config{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if es, err := c.Events(ctx, "authed", herald.Query{}); err != nil || len(es) != 1 {
		t.Fatalf("a client with ManagedURL reads %d events, %v; want 1", len(es), err)
	}
}

// TestManagedRedisSupervised: killing the managed redis-server (by its pid)
// makes /healthz fail within a second; it is restarted on the same port
// and data directory, /healthz recovers, and publishing works again.
// Killed again and again, herald serve gives up and Run returns an error.
func TestManagedRedisSupervised(t *testing.T) {
	redisprocOrSkip(t)
	t.Parallel()
	dir := t.TempDir()
	eng := server.EngineManaged
	s := server.New(load(t, server.Overrides{Engine: &eng, DataDir: &dir}), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 20*time.Second)
		defer c()
		_ = s.Shutdown(sctx)
	})
	pid := s.EnginePid()
	if code, b := post(t, s.URL()+"/v1/topics/sup/events", "before"); code != 200 {
		t.Fatalf("publish: %d %s", code, b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitStatus(t, s.URL()+"/healthz", 503, time.Second)
	if d := time.Since(killed); d > time.Second {
		t.Fatalf("/healthz failed %s after the kill, want within 1s", d)
	}
	waitStatus(t, s.URL()+"/healthz", 200, 20*time.Second)
	if np := s.EnginePid(); np == 0 || np == pid {
		t.Fatalf("after the restart the pid is %d (was %d)", np, pid)
	}
	redistest.WaitFor(t, 20*time.Second, "a publish accepted after the restart", func() bool {
		code, _ := post(t, s.URL()+"/v1/topics/sup/events", "after")
		return code == 200
	})
	// Repeated crashes: the supervisor gives up and Run ends with an error.
	deadline := time.After(50 * time.Second)
	last := 0
	for {
		select {
		case err := <-runErr:
			if err == nil || !strings.Contains(err.Error(), "giving up") {
				t.Fatalf("Run after repeated crashes: %v, want an error saying it gave up", err)
			}
			return
		case <-deadline:
			t.Fatal("herald serve did not give up after repeated crashes")
		case <-time.After(20 * time.Millisecond):
		}
		if p := s.EnginePid(); p != 0 && p != last {
			_ = syscall.Kill(p, syscall.SIGKILL)
			last = p
		}
	}
}

func redisprocOrSkip(t *testing.T) {
	t.Helper()
	if !redisproc.Installed() {
		t.Skip("redis-server is not installed")
	}
}

// waitStatus polls url until it answers want, failing after timeout.
func waitStatus(t *testing.T, url string, want int, timeout time.Duration) {
	t.Helper()
	var last int
	ok := redistest.Poll(timeout, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		last = resp.StatusCode
		return last == want
	})
	if !ok {
		t.Fatalf("%s: %d after %s, want %d", url, last, timeout, want)
	}
}

// spin_wait (or HERALD_SPIN_WAIT) takes auto, off or a duration up to 1ms;
// anything else is refused with the setting named and the values it takes.
func TestSpinWaitSetting(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "auto", "off", "30us", "1ms"} {
		cfg, err := server.Load("", func(k string) string {
			if k == "HERALD_SPIN_WAIT" {
				return ok
			}
			return ""
		}, server.Overrides{})
		if err != nil || cfg.SpinWait != ok {
			t.Fatalf("HERALD_SPIN_WAIT=%q: %v (SpinWait %q)", ok, err, cfg.SpinWait)
		}
	}
	for _, bad := range []string{"fast", "2ms", "0", "-1s"} {
		path := filepath.Join(t.TempDir(), "herald.yaml")
		if err := os.WriteFile(path, []byte("spin_wait: \""+bad+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := server.Load(path, noEnv, server.Overrides{})
		if !errors.Is(err, herald.ErrInvalid) || !strings.Contains(err.Error(), "spin_wait") || !strings.Contains(err.Error(), "auto, off") {
			t.Fatalf("spin_wait %q: %v, want ErrInvalid naming spin_wait and its values", bad, err)
		}
	}
	for in, want := range map[string]time.Duration{"auto": 0, "off": -1, "45us": 45 * time.Microsecond} {
		if got, err := herald.ParseSpinWait(in); err != nil || got != want {
			t.Fatalf("ParseSpinWait(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

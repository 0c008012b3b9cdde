package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
	"github.com/heraldbus/herald/internal/server"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "herald.yaml")
	_ = os.WriteFile(path, []byte("listen: 127.0.0.1:1111\nnamespace: fromyaml\ndata_dir: /yaml\nsse:\n  window: 7\n  resume_window: 5s\nkeys:\n  - name: a\n    sha256: "+strings.Repeat("ab", 32)+"\n    publish: [\"*\"]\n"), 0o600)
	env := map[string]string{"HERALD_NAMESPACE": "fromenv", "HERALD_DATA_DIR": "/env"}
	getenv := func(k string) string { return env[k] }
	flagDir := "/flag"
	cfg, err := server.Load(path, getenv, server.Overrides{DataDir: &flagDir})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:1111" || cfg.Namespace != "fromenv" || cfg.DataDir != "/flag" || cfg.SSE.Window != 7 ||
		cfg.SSE.ResumeWindow != 5*time.Second || len(cfg.Keys) != 1 {
		t.Fatalf("precedence (flags > env > yaml) not kept: %+v", cfg)
	}
	cfg, err = server.Load("", getenv, server.Overrides{})
	if err != nil || cfg.Listen != server.DefaultListen || cfg.Engine != server.EngineAuto || cfg.ReadTimeout != server.DefaultReadTimeout {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	_ = os.WriteFile(path, []byte("listen: x\nlisten_typo: y\n"), 0o600)
	if _, err := server.Load(path, getenv, server.Overrides{}); !errors.Is(err, herald.ErrInvalid) || !strings.Contains(err.Error(), "listen_typo") {
		t.Fatalf("unknown field: %v", err)
	}
	cert := "c.pem"
	if _, err := server.Load("", getenv, server.Overrides{TLSCert: &cert}); !errors.Is(err, herald.ErrInvalid) {
		t.Fatalf("--tls-cert without --tls-key: %v", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func start(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	s := server.New(cfg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

func load(t *testing.T, o server.Overrides) server.Config {
	t.Helper()
	listen := "127.0.0.1:0"
	o.Listen = &listen
	cfg, err := server.Load("", func(string) string { return "" }, o)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestMemoryEngine: the in-process engine serves the API (and says it keeps nothing).
func TestMemoryEngine(t *testing.T) {
	eng := server.EngineMemory
	s := start(t, load(t, server.Overrides{Engine: &eng}))
	if s.Engine() != server.EngineMemory {
		t.Fatalf("engine %s", s.Engine())
	}
	if code, b := post(t, s.URL()+"/v1/topics/mem/events", "hi"); code != 200 {
		t.Fatalf("publish: %d %s", code, b)
	}
	if code, b := get(t, s.URL()+"/readyz"); code != 200 {
		t.Fatalf("readyz: %d %s", code, b)
	}
	// A batch big enough for the transactional append (MULTI/EXEC under a
	// WATCH) works on the in-process engine too.
	items := make([]string, 100)
	for i := range items {
		items[i] = fmt.Sprintf(`{"data":{"n":%d}}`, i)
	}
	resp, err := http.Post(s.URL()+"/v1/topics/mem/events", "application/json", strings.NewReader("["+strings.Join(items, ",")+"]"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("batch publish: %d %s", resp.StatusCode, b)
	}
	if code, b := get(t, s.URL()+"/v1/topics/mem"); code != 200 || !strings.Contains(b, `"length":101`) {
		t.Fatalf("after the batch: %d %s", code, b)
	}
	if code, b := get(t, s.URL()+"/v1/topics/mem/groups"); code != 200 {
		t.Fatalf("groups: %d %s", code, b)
	}
}

// TestManagedEngineKeepsData: the managed redis-server keeps events in its
// data directory across a shutdown and a new start, and is stopped by pid.
func TestManagedEngineKeepsData(t *testing.T) {
	redistest.Skip(t)
	dir := t.TempDir()
	eng := server.EngineManaged
	o := server.Overrides{Engine: &eng, DataDir: &dir}
	s := server.New(load(t, o), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Run(context.Background()) }()
	pid := s.EnginePid()
	if pid == 0 {
		t.Fatal("no managed redis-server pid")
	}
	if code, b := post(t, s.URL()+"/v1/topics/kept/events", "survives"); code != 200 {
		t.Fatalf("publish: %d %s", code, b)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); strings.Contains(string(b), "redis-server") {
			t.Fatalf("managed redis-server %d still running after shutdown", pid)
		}
	}
	s2 := start(t, load(t, o))
	code, b := get(t, s2.URL()+"/v1/topics/kept")
	if code != 200 || !strings.Contains(b, `"length":1`) {
		t.Fatalf("after restart: %d %s", code, b)
	}
	// A second server on the same data directory is refused.
	s3 := server.New(load(t, o), nil)
	if err := s3.Start(ctx); err == nil || !strings.Contains(err.Error(), "in use") {
		_ = s3.Shutdown(ctx)
		t.Fatalf("second server on the same data dir: %v", err)
	}
}

// TestStreamsOutliveServerTimeouts: an SSE stream lives longer than the
// server's read and write timeouts (each write has its own deadline).
func TestStreamsOutliveServerTimeouts(t *testing.T) {
	t.Parallel()
	url, ns := redistest.URL(t), redistest.Namespace(t)
	cfg := load(t, server.Overrides{Redis: &url, Namespace: &ns})
	cfg.ReadTimeout, cfg.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	s := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A group stream and a live tail (which takes its connection over).
	var bodies []io.ReadCloser
	for _, path := range []string{"/v1/topics/long/events?group=g", "/v1/topics/long/events"} {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		bodies = append(bodies, resp.Body)
	}
	time.Sleep(time.Second) // longer than both server timeouts: what is tested
	if code, b := post(t, s.URL()+"/v1/topics/long/events", "late"); code != 200 {
		t.Fatalf("publish: %d %s", code, b)
	}
	for i, body := range bodies {
		buf := make([]byte, 4096)
		got := ""
		for !strings.Contains(got, `"late"`) {
			n, err := body.Read(buf)
			if err != nil {
				t.Fatalf("stream %d ended after the server timeouts: %v (read %q)", i, err, got)
			}
			got += string(buf[:n])
		}
	}
}

// TestTLS: --tls-cert and --tls-key serve HTTPS.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	_ = os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	eng := server.EngineMemory
	s := start(t, load(t, server.Overrides{Engine: &eng, TLSCert: &certPath, TLSKey: &keyPath}))
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s", s.URL())
	}
	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(s.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz over TLS: %d", resp.StatusCode)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestLoadGroupBounds: the settings that bound group delivery (ack_timeout,
// limits.max_sessions_per_key, limits.max_group_feeds) are read from the
// config file; ack_timeout defaults to the gateway's.
func TestLoadGroupBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.yaml")
	_ = os.WriteFile(path, []byte("ack_timeout: 5s\nlimits:\n  max_sessions_per_key: 7\n  max_group_feeds: 3\n"), 0o600)
	cfg, err := server.Load(path, func(string) string { return "" }, server.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AckTimeout != 5*time.Second || cfg.Limits.MaxSessionsPerKey != 7 || cfg.Limits.MaxGroupFeeds != 3 {
		t.Fatalf("ack_timeout %s, max_sessions_per_key %d, max_group_feeds %d", cfg.AckTimeout, cfg.Limits.MaxSessionsPerKey, cfg.Limits.MaxGroupFeeds)
	}
	cfg, err = server.Load("", func(string) string { return "" }, server.Overrides{})
	if err != nil || cfg.AckTimeout != gateway.DefaultAckTimeout {
		t.Fatalf("default ack_timeout %s (%v), want %s", cfg.AckTimeout, err, gateway.DefaultAckTimeout)
	}
}

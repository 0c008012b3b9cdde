// Package redistest gives tests a real redis-server: one per test binary,
// started on a free loopback port by TestMain, and a unique key namespace per
// test so tests share it safely in parallel.
package redistest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/redisproc"
)

var (
	shared  *redisproc.Server
	counter atomic.Int64
	runID   = fmt.Sprintf("t%d", time.Now().UnixNano()%1e9)
)

// Required reports whether HERALD_REQUIRE_REDIS=1 is set: then a missing
// redis-server fails the run instead of skipping tests.
func Required() bool { return os.Getenv("HERALD_REQUIRE_REDIS") == "1" }

// OnStart, when set before Main, is called with the shared server's URL
// before the tests run (Example functions, which get no testing.TB, find
// the server through what it sets).
var OnStart func(url string)

// Main starts the shared server, runs the tests and stops the server.
// Call it from TestMain: os.Exit(redistest.Main(m)).
func Main(m *testing.M) int {
	if redisproc.Installed() {
		s, err := redisproc.Start(context.Background(), redisproc.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "redistest:", err)
			return 1
		}
		shared = s
		defer func() { _ = s.Stop() }()
		if OnStart != nil {
			OnStart(s.URL())
		}
	} else if Required() {
		fmt.Fprintln(os.Stderr, "redistest: HERALD_REQUIRE_REDIS=1 but redis-server is not installed (apt-get install -y redis-server)")
		return 1
	}
	return m.Run()
}

// Skip skips (or, with HERALD_REQUIRE_REDIS=1, fails) a test when redis-server is missing.
func Skip(t testing.TB) {
	t.Helper()
	if redisproc.Installed() {
		return
	}
	if Required() {
		t.Fatal("redis-server is not installed and HERALD_REQUIRE_REDIS=1")
	}
	t.Skip("redis-server is not installed")
}

// URL returns the shared server's URL.
func URL(t testing.TB) string {
	t.Helper()
	Skip(t)
	if shared == nil {
		t.Fatal("redistest: shared server not started; call redistest.Main from TestMain")
	}
	return shared.URL()
}

// Shared returns the shared server.
func Shared(t testing.TB) *redisproc.Server {
	URL(t)
	return shared
}

// Namespace returns a key prefix unique to this test.
func Namespace(t testing.TB) string {
	n := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	if len(n) > 40 {
		n = n[:40]
	}
	return fmt.Sprintf("ht:%s:%d:%s", runID, counter.Add(1), n)
}

// Own starts a redis-server that belongs to one test only (for restart and
// kill tests) and stops it at the end of the test.
func Own(t testing.TB, opts redisproc.Options) *redisproc.Server {
	t.Helper()
	Skip(t)
	s, err := redisproc.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// OwnCluster starts a Redis Cluster that belongs to one test only, with
// opts (Dir defaults to a temporary directory of t); at the end of the test
// its nodes are killed by their recorded pids and its data removed.
func OwnCluster(t testing.TB, opts redisproc.ClusterOptions) *redisproc.Cluster {
	t.Helper()
	Skip(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := redisproc.StartCluster(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, nd := range cl.Nodes {
			if cl.Running(nd) {
				_, _ = cl.Kill(nd.Port)
			}
		}
		_ = cl.Purge()
	})
	return cl
}

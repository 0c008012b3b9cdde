package herald_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestMain starts the shared redis-server; the Example functions
// (example_test.go) find it through HERALD_REDIS_URL.
func TestMain(m *testing.M) {
	if code, ok := runConsumerProcess(); ok { // the binary runs as a test's consumer process (ordered_test.go)
		os.Exit(code)
	}
	redistest.OnStart = func(url string) { os.Setenv("HERALD_REDIS_URL", url) }
	os.Exit(redistest.Main(m))
}

// newClient returns a client on the shared test server with a namespace of its own.
func newClient(t testing.TB, mod ...func(*herald.Config)) *herald.Client {
	t.Helper()
	cfg := herald.Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t)}
	for _, f := range mod {
		f(&cfg)
	}
	c, err := herald.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor is redistest.WaitFor, the one bounded wait of the tests.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	redistest.WaitFor(t, d, what, cond)
}

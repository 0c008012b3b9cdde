package dashboard_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestOverviewShowsReplication: on a master with a replica, the overview's
// Redis table shows the master's memory and its replica online.
func TestOverviewShowsReplication(t *testing.T) {
	needBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := redistest.Own(t, redisproc.Options{Args: []string{"--repl-diskless-sync-delay", "0"}})
	r := redistest.Own(t, redisproc.Options{})
	if _, err := rdb.Command(ctx, r.Addr(), "REPLICAOF", "127.0.0.1", strconv.Itoa(m.Port)); err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, gateway.Config{}, m.URL())
	tb := e.tab()
	tb.open("/")
	tb.wait(20*time.Second, `[...document.querySelectorAll('tr[data-node] .repl li')].some(li => li.textContent.includes('online'))`)
	row := eval[string](tb, `document.querySelector('tr[data-node]').textContent`)
	if !contains(row, m.Addr(), "master", r.Addr(), "online", "behind") {
		t.Errorf("master row %q lacks its replica", row)
	}
	if !eval[bool](tb, `Number(document.querySelector('tr[data-node] .memory')?.dataset.bytes) > 0`) {
		t.Error("the master's memory is not shown")
	}
}

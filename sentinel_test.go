package herald_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// A client given a redis+sentinel:// URL finds the master through Sentinel,
// and follows it when Sentinel promotes the replica.
func TestSentinelURLAndFailover(t *testing.T) {
	t.Parallel()
	master := redistest.Own(t, redisproc.Options{AppendOnly: true})
	replica := redistest.Own(t, redisproc.Options{AppendOnly: true, Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port)}})
	waitFor(t, 10*time.Second, "the replica to link", func() bool {
		info, err := redisproc.Command(replica.Addr(), time.Second, "INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	ctx := ctxT(t, 60*time.Second)
	sen, err := redisproc.StartSentinel(ctx, redisproc.SentinelOptions{Master: "mymaster", MasterAddr: master.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sen.Stop() }()
	waitFor(t, 10*time.Second, "Sentinel to see the replica", func() bool {
		out, err := redisproc.Command(sen.Addr(), time.Second, "SENTINEL", "REPLICAS", "mymaster")
		return err == nil && strings.Contains(out, strconv.Itoa(replica.Port))
	})
	c, err := herald.New(context.Background(), herald.Config{URL: "redis+sentinel://" + sen.Addr() + "/mymaster", PublishTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan string, 10)
	if _, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		got <- string(m.Data)
		return nil
	}), herald.BlockTime(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "before" {
		t.Fatalf("got %q", v)
	}
	master.Kill()
	// Sentinel promotes the replica; the client follows and publishing resumes.
	if _, err := c.Publish(ctx, "t", herald.Event{Data: []byte("after")}); err != nil {
		t.Fatalf("publish after the failover: %v", err)
	}
	select {
	case v := <-got:
		if v != "after" {
			t.Fatalf("got %q", v)
		}
	case <-ctx.Done():
		t.Fatal("nothing consumed after the Sentinel failover")
	}
	info, err := redisproc.Command(replica.Addr(), time.Second, "INFO", "replication")
	if err != nil || !strings.Contains(info, "role:master") {
		t.Fatalf("the old replica is not the master after the failover: %q %v", info, err)
	}
}

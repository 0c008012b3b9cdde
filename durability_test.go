package herald_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

func TestReplicatedDurability(t *testing.T) {
	master := redistest.Own(t, redisproc.Options{AppendOnly: true})
	ctx := ctxT(t, 30*time.Second)

	// No replica yet: the publish is stored but reported as degraded.
	c, err := herald.New(context.Background(), herald.Config{URL: master.URL(), ReplicationTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.Publish(ctx, "t", herald.Event{Data: []byte("a")}, herald.WithDurability(herald.Replicated))
	if err != nil || !p.Degraded || p.Replicas != 0 {
		t.Fatalf("without a replica: %+v, %v; want degraded with 0 replicas", p, err)
	}
	if c.Stats().DegradedPublishes != 1 {
		t.Fatalf("degraded counter = %d", c.Stats().DegradedPublishes)
	}
	strict, err := herald.New(context.Background(), herald.Config{URL: master.URL(), ReplicationTimeout: 50 * time.Millisecond, FailUnreplicated: true})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	if _, err := strict.Publish(ctx, "t", herald.Event{Data: []byte("b")}, herald.WithDurability(herald.Replicated)); !errors.Is(err, herald.ErrNotReplicated) {
		t.Fatalf("strict without a replica: %v, want ErrNotReplicated", err)
	}
	// Memory durability never waits.
	if p, err := c.Publish(ctx, "t", herald.Event{Data: []byte("c")}); err != nil || p.Degraded || p.Replicas != -1 {
		t.Fatalf("memory publish: %+v %v", p, err)
	}

	// With a linked replica, WAIT answers 1.
	replica := redistest.Own(t, redisproc.Options{Args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port)}})
	waitFor(t, 10*time.Second, "the replica to link", func() bool {
		info, err := redisproc.Command(replica.Addr(), time.Second, "INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	if err := c.CreateTopic(ctx, "safe", herald.TopicConfig{Durability: herald.Replicated}); err != nil {
		t.Fatal(err)
	}
	p, err = c.Publish(ctx, "safe", herald.Event{Data: []byte("d")})
	if err != nil || p.Degraded || p.Replicas != 1 {
		t.Fatalf("with a replica: %+v %v; want 1 replica", p, err)
	}
	if ti, _ := c.TopicInfo(ctx, "safe"); ti.Config.Durability != herald.Replicated {
		t.Fatalf("topic durability = %v", ti.Config.Durability)
	}
}

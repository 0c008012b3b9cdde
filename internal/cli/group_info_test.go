package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// herald groups and herald group info show which consumer owns each
// partition, its lease, pending and lag (issue 12 item 4), in text and JSON.
func TestGroupInfoShowsPartitionOwners(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	c := client(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.CreateTopic(ctx, "orders", herald.TopicConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alpha", "beta"} {
		sub, err := c.Subscribe(ctx, "orders", "billing", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error { return nil }),
			herald.Consumer(name))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Stop()
	}
	var info struct {
		Name       string   `json:"name"`
		Members    []string `json:"members"`
		Lag        int64    `json:"lag"`
		Partitions []struct {
			Partition int     `json:"partition"`
			Owner     string  `json:"owner"`
			LeaseAge  float64 `json:"lease_age_seconds"`
			LeaseLeft float64 `json:"lease_left_seconds"`
			Pending   int64   `json:"pending"`
			Lag       int64   `json:"lag"`
		} `json:"partitions"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := run(t, ns, "", "group", "info", "orders", "billing", "--output", "json")
		if r.code != 0 {
			t.Fatalf("group info: code %d, %s", r.code, r.err)
		}
		if err := json.Unmarshal([]byte(r.out), &info); err != nil {
			t.Fatalf("group info JSON: %v\n%s", err, r.out)
		}
		owners := map[string]int{}
		for _, p := range info.Partitions {
			owners[p.Owner]++
		}
		if len(info.Partitions) == 4 && owners["alpha"] == 2 && owners["beta"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions not owned 2 and 2 after 10s: %+v", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Join(info.Members, ",") != "alpha,beta" || info.Lag != 0 {
		t.Fatalf("group info: %+v", info)
	}
	for _, p := range info.Partitions {
		if p.LeaseLeft <= 0 || p.LeaseAge < 0 || p.Pending != 0 || p.Lag != 0 {
			t.Fatalf("partition %+v", p)
		}
	}
	r := run(t, ns, "", "groups", "orders")
	if r.code != 0 || !strings.Contains(r.out, "OWNER") || !strings.Contains(r.out, "alpha") || !strings.Contains(r.out, "beta") {
		t.Fatalf("groups: code %d\n%s%s", r.code, r.out, r.err)
	}
	var gs []map[string]any
	r = run(t, ns, "", "groups", "orders", "--output", "json")
	if err := json.Unmarshal([]byte(r.out), &gs); err != nil || len(gs) != 1 {
		t.Fatalf("groups JSON: %v\n%s", err, r.out)
	}
	if parts, _ := gs[0]["partitions"].([]any); len(parts) != 4 {
		t.Fatalf("groups JSON without 4 partitions: %s", r.out)
	}
	if r := run(t, ns, "", "group", "info", "orders", "nope"); r.code == 0 || !strings.Contains(r.err, "not found") {
		t.Fatalf("group info of a missing group: code %d, %q", r.code, r.err)
	}
}

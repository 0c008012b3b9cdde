package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

// instance is one gateway of several sharing a Redis and a namespace.
type instance struct {
	*env
	stop func()
}

func startInstance(t *testing.T, url, ns, name string, cfg gateway.Config) *instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := herald.New(ctx, herald.Config{URL: url, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Client, cfg.Instance = c, name
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = g.Shutdown(ctx)
			srv.Close()
			c.Close()
		})
	}
	t.Cleanup(stop)
	return &instance{env: &env{t: t, c: c, g: g, srv: srv, url: srv.URL}, stop: stop}
}

// TestTwoInstancesResumeWithoutGap: an SSE group client reads part of a
// topic from one gateway; that gateway stops; the client reconnects to a
// second gateway on the same Redis with Last-Event-ID and gets every
// event after it.
func TestTwoInstancesResumeWithoutGap(t *testing.T) {
	t.Parallel()
	url, ns := redistest.URL(t), redistest.Namespace(t)
	a := startInstance(t, url, ns, "a", gateway.Config{})
	b := startInstance(t, url, ns, "b", gateway.Config{})
	const total, firstRead = 60, 25
	s1 := a.openSSE("/v1/topics/so/events?group=g&client=app&from=beginning&window=16", nil)
	s1.next(t, "session", 5*time.Second)
	evs := make([]string, total)
	for i := range evs {
		evs[i] = fmt.Sprintf(`{"data":{"n":%d}}`, i)
	}
	a.publish("so", "["+strings.Join(evs, ",")+"]", map[string]string{"Content-Type": "application/json"})
	seen := map[int]int{}
	lastID := ""
	for range firstRead {
		ev := s1.next(t, "", 5*time.Second)
		var d struct{ N int }
		_ = json.Unmarshal(decodeEvent(t, ev.Data).Data, &d)
		seen[d.N]++
		lastID = ev.ID
		// The client confirms as it goes, by Last-Event-ID on the next
		// connection or with the ack endpoint.
		code, rb := a.do("POST", "/v1/topics/so/groups/g/ack", []byte(`{"client":"app","up_to":"`+ev.ID+`"}`), nil)
		if code != 200 {
			t.Fatalf("ack: %d %s", code, rb)
		}
	}
	s1.close()
	a.stop() // the first instance goes away: what it held goes back to the group
	s2 := b.openSSE("/v1/topics/so/events?group=g&client=app&window=16", map[string]string{"Last-Event-ID": lastID})
	s2.next(t, "session", 5*time.Second)
	for len(seen) < total {
		ev := s2.next(t, "", 15*time.Second)
		var d struct{ N int }
		_ = json.Unmarshal(decodeEvent(t, ev.Data).Data, &d)
		seen[d.N]++
		b.do("POST", "/v1/topics/so/groups/g/ack", []byte(`{"client":"app","up_to":"`+ev.ID+`"}`), nil)
	}
	dups := 0
	for n, k := range seen {
		if k > 1 && n < firstRead {
			t.Fatalf("event %d, confirmed on the first instance, came again %d times", n, k-1)
		}
		dups += k - 1
	}
	t.Logf("%d events, %d sent twice after the move", total, dups)
}

// TestWebhookSharedByInstances: a webhook configured on two gateways of
// one Redis is one group: each event is POSTed once (redeliveries
// counted), none is missing, and stopping one instance leaves the other
// delivering the rest at once.
func TestWebhookSharedByInstances(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	got := map[string]int{}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ce struct{ ID string }
		_ = json.Unmarshal(b, &ce)
		mu.Lock()
		got[ce.ID]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer target.Close()
	url, ns := redistest.URL(t), redistest.Namespace(t)
	hook := []gateway.Webhook{{Name: "shared", Topic: "wso", URL: target.URL, From: "beginning"}}
	a := startInstance(t, url, ns, "a", gateway.Config{Webhooks: hook})
	b := startInstance(t, url, ns, "b", gateway.Config{Webhooks: hook})
	ctx := context.Background()
	const n = 200
	ids := map[string]bool{}
	for i := range n {
		if _, err := b.c.Publish(ctx, "wso", herald.Event{Key: fmt.Sprint(i % 10), Data: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			a.stop() // half-way, one instance stops
		}
	}
	es, err := b.c.Events(ctx, "wso", herald.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		ids[e.ID] = true
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for id := range ids {
			if got[id] == 0 {
				missing++
			}
		}
		dups := 0
		for _, k := range got {
			dups += k - 1
		}
		mu.Unlock()
		if missing == 0 {
			t.Logf("%d events, each delivered; %d redeliveries", len(ids), dups)
			if dups > len(ids)/10 {
				t.Fatalf("%d redeliveries for %d events", dups, len(ids))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events never delivered", missing, len(ids))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

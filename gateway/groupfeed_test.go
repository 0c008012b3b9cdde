package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestGroupSessionsShareOneConsumer: 30 SSE sessions and a WebSocket
// subscription of one group share the process's one consumer of it: Redis
// connections do not grow with them, and each event reaches exactly one.
func TestGroupSessionsShareOneConsumer(t *testing.T) {
	t.Parallel()
	rs := redistest.Own(t, redisproc.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := herald.New(ctx, herald.Config{URL: rs.URL(), DefaultTopic: herald.TopicConfig{Partitions: 4}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := newEnvClient(t, c, gateway.Config{})
	clients := func() int {
		out, err := redisproc.Command(rs.Addr(), time.Second, "CLIENT", "LIST")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(out, "id=")
	}
	first := e.openSSE("/v1/topics/fan/events?group=g&ack=auto", nil)
	first.next(t, "session", 5*time.Second)
	for i := range 40 { // warm up: the publisher's connections to every partition
		if _, err := c.Publish(ctx, "fan", herald.Event{Key: fmt.Sprint(i), Data: []byte("warm")}); err != nil {
			t.Fatal(err)
		}
	}
	for range 40 {
		first.next(t, "", 5*time.Second)
	}
	base := clients()
	streams := []*sseClient{first}
	for range 29 {
		s := e.openSSE("/v1/topics/fan/events?group=g&ack=auto", nil)
		s.next(t, "session", 5*time.Second)
		streams = append(streams, s)
	}
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ws.CloseNow() }()
	sub, _ := json.Marshal(gateway.WSRequest{Op: "subscribe", ID: "w", Topic: "fan", Group: "g"})
	_ = ws.Write(ctx, websocket.MessageText, sub)
	if _, b, err := ws.Read(ctx); err != nil || !strings.Contains(string(b), "subscribed") {
		t.Fatalf("ws subscribe: %s %v", b, err)
	}
	if got := clients(); got > base+2 {
		t.Fatalf("%d Redis clients with 31 group clients, %d with one", got, base)
	}
	waitMetric(t, e, "herald_group_feeds 1")
	const n = 200
	for i := range n {
		if _, err := c.Publish(ctx, "fan", herald.Event{Key: fmt.Sprint(i), Data: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	// One deadline for all readers: they read until every event came (and
	// a moment longer, for duplicates) or 20 s passed, however the events
	// are spread among them over time.
	readCtx, stopReading := context.WithTimeout(ctx, 20*time.Second)
	defer stopReading()
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case ev, ok := <-s.events:
					if !ok {
						return
					}
					if ev.Event == "" {
						mu.Lock()
						seen[ev.ID]++
						mu.Unlock()
					}
				case <-readCtx.Done():
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // the WebSocket acks each event
		defer wg.Done()
		for {
			_, b, err := ws.Read(readCtx)
			if err != nil {
				return
			}
			var m gateway.WSMessage
			_ = json.Unmarshal(b, &m)
			if m.Type != "event" {
				continue
			}
			var ev gateway.EventJSON
			_ = json.Unmarshal(m.Event, &ev)
			mu.Lock()
			seen[ev.Position]++
			mu.Unlock()
			ack, _ := json.Marshal(gateway.WSRequest{Op: "ack", ID: "w", Positions: []string{ev.Position}})
			_ = ws.Write(ctx, websocket.MessageText, ack)
		}
	}()
	if redistest.Poll(20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= n
	}) {
		// Every event came: read 2 s longer for duplicates (as long as
		// each reader used to wait for one more event).
		select {
		case <-readCtx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	stopReading()
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d distinct events delivered, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Fatalf("event %s delivered %d times, want once", id, k)
		}
	}
	if got := clients(); got > base+2 {
		t.Fatalf("%d Redis clients after delivery, %d before", got, base)
	}
}

// TestGroupStreamWindowFull: a client that never acks is told, with a
// window_full event, that nothing more comes until it confirms; an ack
// lets the stream go on.
func TestGroupStreamWindowFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	s := e.openSSE("/v1/topics/wf/events?group=g&window=2&client=slow&from=beginning", nil)
	s.next(t, "session", 5*time.Second)
	e.publish("wf", `[{"data":1},{"data":2},{"data":3},{"data":4}]`, map[string]string{"Content-Type": "application/json"})
	s.next(t, "", 5*time.Second)
	second := s.next(t, "", 5*time.Second)
	full := s.next(t, "window_full", 5*time.Second)
	if !strings.Contains(string(full.Data), `"unconfirmed":2`) || !strings.Contains(string(full.Data), "/ack") {
		t.Fatalf("window_full event %s", full.Data)
	}
	code, b := e.do("POST", "/v1/topics/wf/groups/g/ack", []byte(`{"client":"slow","up_to":"`+second.ID+`"}`), nil)
	if code != 200 {
		t.Fatalf("ack: %d %s", code, b)
	}
	s.next(t, "", 5*time.Second)
	s.next(t, "", 5*time.Second)
}

// TestConnectDisconnectCycles: 2,000 group stream connects and disconnects;
// once the sessions' resume window and the feed's linger have passed,
// goroutines are back within 10% of the start (within 10 s) and the heap
// within 1 KB per cycle.
func TestConnectDisconnectCycles(t *testing.T) {
	// Serial: it counts the process's goroutines and heap.
	if testing.Short() {
		t.Skip("2,000 cycles")
	}
	defer gateway.SetFeedLinger(300 * time.Millisecond)() // not parallel: no other test runs meanwhile
	e := newEnv(t, gateway.Config{SSE: gateway.SSEConfig{ResumeWindow: 200 * time.Millisecond}})
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	cycle := func(i int) {
		req, _ := http.NewRequest("GET", e.url+fmt.Sprintf("/v1/topics/cyc/events?group=g%d", i%4), nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		_, _ = resp.Body.Read(buf) // the stream's first bytes
		resp.Body.Close()
	}
	// settle waits until no session or feed is left, then (up to 10 s)
	// until the goroutine count is done(g): the feeds' goroutines end a
	// moment after the metrics say so, with no signal for that. It returns
	// the last count and the heap.
	settle := func(done func(g int) bool) (int, uint64) {
		tr.CloseIdleConnections()
		var ms runtime.MemStats
		var g int
		deadline := time.Now().Add(20 * time.Second)
		for {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			g = runtime.NumGoroutine()
			if time.Now().After(deadline) {
				return g, ms.HeapAlloc
			}
			_, b := e.do("GET", "/metrics", nil, nil)
			if strings.Contains(string(b), "herald_group_feeds 0") && strings.Contains(string(b), "herald_group_sessions 0") {
				redistest.Poll(10*time.Second, func() bool {
					g = runtime.NumGoroutine()
					return done(g)
				})
				// The least of three collections: what other goroutines
				// allocate between a collection and the reading is not live.
				heap := uint64(math.MaxUint64)
				for range 3 {
					runtime.GC()
					runtime.ReadMemStats(&ms)
					heap = min(heap, ms.HeapAlloc)
				}
				return g, heap
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The baseline: the count has not dropped for 300 ms.
	low, lowAt := math.MaxInt, time.Now()
	steady := func(g int) bool {
		if g < low {
			low, lowAt = g, time.Now()
			return false
		}
		return time.Since(lowAt) >= 300*time.Millisecond
	}
	for i := range 8 { // warm up: lazily made pools, metric series
		cycle(i)
	}
	g0, h0 := settle(steady)
	bound := func(g int) bool { return float64(g) <= float64(g0)*1.1+2 }
	var wg sync.WaitGroup
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				cycle(i)
			}
		}()
	}
	for i := range 2000 {
		work <- i
	}
	close(work)
	wg.Wait()
	g1, h1 := settle(bound)
	t.Logf("goroutines %d -> %d, heap %d KB -> %d KB", g0, g1, h0>>10, h1>>10)
	if !bound(g1) {
		t.Fatalf("goroutines %d after 2,000 cycles, %d before", g1, g0)
	}
	// A session or feed left behind holds at least its buffers (several KB):
	// 2,000 of them would grow the heap by far more than 2 MB. Below that is
	// the runtime's and the HTTP stack's own caches (one run with
	// GOMAXPROCS=3 measured 4.8 -> 5.8 MB with every goroutine gone).
	if h1 > h0+2<<20 {
		t.Fatalf("heap %d KB after 2,000 cycles, %d KB before: more than 1 KB per cycle left behind", h1>>10, h0>>10)
	}
}

func waitMetric(t *testing.T, e *env, line string) {
	t.Helper()
	redistest.WaitFor(t, 5*time.Second, "the metric line "+line, func() bool {
		_, b := e.do("GET", "/metrics", nil, nil)
		return strings.Contains(string(b), line+"\n")
	})
}

package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
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

// TestGroupFeedOnePerGroup: a group has one consumer per server whatever
// its clients ask for. A client asking for another filter or max_attempts
// while the group has clients here is refused with 409, naming the
// difference, instead of getting a consumer (and its 256 workers) of its
// own; once the group's clients are gone, other options replace the idle
// consumer. Consumers of distinct groups are bounded by
// limits.max_group_feeds (503).
func TestGroupFeedOnePerGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{Limits: gateway.Limits{MaxGroupFeeds: 2}, SSE: gateway.SSEConfig{ResumeWindow: 100 * time.Millisecond}})
	filter := url.QueryEscape(`type == "a"`)
	first := e.openSSE("/v1/topics/opt/events?group=g&max_attempts=3&filter="+filter, nil)
	info := first.next(t, "session", 5*time.Second)
	for i := range 20 { // each used to start a consumer of its own
		code, b := e.streamStatus(fmt.Sprintf("/v1/topics/opt/events?group=g&max_attempts=%d&filter=%s", 4+i, filter), nil)
		if code != http.StatusConflict || !strings.Contains(string(b), gateway.CodeGroupOptionsConflict) || !strings.Contains(string(b), "max_attempts") {
			t.Fatalf("max_attempts=%d on a group consumed with 3: %d %s, want 409 %s", 4+i, code, b, gateway.CodeGroupOptionsConflict)
		}
	}
	code, b := e.streamStatus("/v1/topics/opt/events?group=g&max_attempts=3&filter="+url.QueryEscape(`type == "b"`), nil)
	if code != http.StatusConflict || !strings.Contains(string(b), `filter \"type == \\\"b\\\"\"`) {
		t.Fatalf("another filter: %d %s, want 409 naming the filter", code, b)
	}
	w := e.dialWS(t, "")
	w.send(gateway.WSRequest{Op: "subscribe", ID: "s", Topic: "opt", Group: "g", Filter: `type == "a"`, MaxAttempts: 9})
	if m, ok := w.recv(5 * time.Second); !ok || m.Type != "error" || m.Error == nil || m.Error.Code != gateway.CodeGroupOptionsConflict {
		t.Fatalf("WebSocket subscription with other options: %+v, want an error %s", m, gateway.CodeGroupOptionsConflict)
	}
	same := e.openSSE("/v1/topics/opt/events?group=g&max_attempts=3&filter="+filter, nil)
	if info2 := same.next(t, "session", 5*time.Second); !strings.Contains(string(info2.Data), consumerOf(t, info.Data)) {
		t.Fatalf("same options: session %s, want the consumer of %s", info2.Data, info.Data)
	}
	if got := metricSum(e, "herald_group_feeds"); got != 1 {
		t.Fatalf("herald_group_feeds %v, want 1", got)
	}
	// The default max_attempts (8) named or not is the same consumer.
	dflt := e.openSSE("/v1/topics/opt/events?group=d", nil)
	dflt.next(t, "session", 5*time.Second)
	if code, b := e.streamStatus("/v1/topics/opt/events?group=d&max_attempts=8", nil); code != 200 {
		t.Fatalf("max_attempts=8 on a group consumed with the default: %d %s", code, b)
	}
	// Two consumers run: a third group is refused.
	code, b = e.streamStatus("/v1/topics/opt/events?group=third", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(b), gateway.CodeTooManyGroups) || !strings.Contains(string(b), "limits.max_group_feeds") {
		t.Fatalf("a third group beyond max_group_feeds=2: %d %s, want 503 %s", code, b, gateway.CodeTooManyGroups)
	}
	if metricSum(e, "herald_limited_total", `limit="group_feeds"`) == 0 {
		t.Fatal("the refusal is not counted in herald_limited_total")
	}
	// Once group g's clients are gone (sessions expired), other options
	// take over its idle consumer at once.
	first.close()
	same.close()
	_ = w.c.CloseNow()
	redistest.WaitFor(t, 10*time.Second, "group g's sessions to expire", func() bool {
		code, _ := e.streamStatus("/v1/topics/opt/events?group=g&max_attempts=5", nil)
		return code == http.StatusOK
	})
}

func consumerOf(t *testing.T, session []byte) string {
	t.Helper()
	var s struct{ Consumer string }
	if err := json.Unmarshal(session, &s); err != nil || s.Consumer == "" {
		t.Fatalf("session event %s: %v", session, err)
	}
	return s.Consumer
}

// TestGroupAckTimeoutKeepsOthersFlowing: a member of a group that never
// confirms (ack=client, the default window of 256, as many events as the
// group's consumer holds) does not stop the group's other members on this
// server: what it holds goes back to the group after the ack timeout (and
// it is told), and the member that acknowledges gets every event. Without
// the timeout the events it held, and those queued behind them, never
// came.
func TestGroupAckTimeoutKeepsOthersFlowing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{AckTimeout: 250 * time.Millisecond})
	stuck := e.openSSE("/v1/topics/fair/events?group=g&client=stuck", nil)
	stuck.next(t, "session", 5*time.Second)
	good := e.openSSE("/v1/topics/fair/events?group=g&client=good&ack=auto", nil)
	good.next(t, "session", 5*time.Second)
	const n = 300
	var batch strings.Builder
	batch.WriteString("[")
	for i := range n {
		if i > 0 {
			batch.WriteString(",")
		}
		fmt.Fprintf(&batch, `{"data":%d}`, i)
	}
	batch.WriteString("]")
	e.publish("fair", batch.String(), map[string]string{"Content-Type": "application/json"})
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case ev, ok := <-good.events:
			if !ok {
				t.Fatal("the acknowledging client's stream ended")
			}
			if ev.Event == "" {
				seen[ev.ID] = true
			}
		case <-deadline:
			t.Fatalf("the acknowledging client got %d of %d events: the one that never confirms holds the group", len(seen), n)
		}
	}
	exp := stuck.next(t, "ack_timeout", 10*time.Second)
	var body struct {
		Positions  []string `json:"positions"`
		AckTimeout string   `json:"ack_timeout"`
	}
	if err := json.Unmarshal(exp.Data, &body); err != nil || len(body.Positions) == 0 || body.AckTimeout != "250ms" {
		t.Fatalf("ack_timeout event %s: %v", exp.Data, err)
	}
	// Confirming a released event is refused: it is no longer this client's.
	code, b := e.do("POST", "/v1/topics/fair/groups/g/ack", []byte(`{"client":"stuck","positions":["`+body.Positions[0]+`"]}`), nil)
	if code != 200 || !strings.Contains(string(b), `"settled":0`) {
		t.Fatalf("ack of a released event: %d %s, want nothing settled", code, b)
	}
	if metricSum(e, "herald_deliveries_total", `outcome="timeout"`, `via="sse"`) == 0 {
		t.Fatal("released events are not counted as outcome=timeout")
	}
}

// TestWebSocketAckTimeout: a WebSocket group delivery not acknowledged
// within the ack timeout goes back to the group; the client gets an error
// message of code ack_timeout with the position, and the event comes again.
func TestWebSocketAckTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{AckTimeout: time.Second})
	w := e.dialWS(t, "")
	w.send(gateway.WSRequest{Op: "subscribe", ID: "s", Topic: "wsat", Group: "g"})
	w.expect("subscribed")
	e.publish("wsat", "once", nil)
	first := w.expect("event")
	var ev gateway.EventJSON
	if err := json.Unmarshal(first.Event, &ev); err != nil {
		t.Fatal(err)
	}
	var expired gateway.WSMessage
	for expired.Type != "error" {
		m, ok := w.recv(5 * time.Second)
		if !ok {
			t.Fatal("no ack_timeout message")
		}
		expired = m
	}
	if expired.Error.Code != gateway.CodeAckTimeout || len(expired.Positions) != 1 || expired.Positions[0].Position != ev.Position {
		t.Fatalf("message %+v %+v, want ack_timeout for %s", expired, expired.Error, ev.Position)
	}
	again := w.expect("event") // redelivered, to the only member
	var ev2 gateway.EventJSON
	_ = json.Unmarshal(again.Event, &ev2)
	if ev2.Position != ev.Position {
		t.Fatalf("redelivered %s, want %s", ev2.Position, ev.Position)
	}
	w.send(gateway.WSRequest{Op: "ack", ID: "s", Positions: []string{ev.Position}})
	waitPending(t, e, "wsat", "g", 0)
}

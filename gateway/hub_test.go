package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestTailsShareOneReader: 100 live tails of a 4-partition topic on their
// own redis-server add no Redis connections beyond the topic's one feed,
// and each receives every event, in order per partition.
func TestTailsShareOneReader(t *testing.T) {
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
	for i := range 40 { // the topic, and the publisher's connections to every partition
		if _, err := c.Publish(ctx, "shared", herald.Event{Key: fmt.Sprint(i), Data: []byte("seed")}); err != nil {
			t.Fatal(err)
		}
	}
	clients := func() int {
		out, err := redisproc.Command(rs.Addr(), time.Second, "CLIENT", "LIST")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(out, "id=")
	}
	first := e.openSSE("/v1/topics/shared/events", nil)
	waitMetric(t, e, "herald_hub_feeds 1")
	base := clients()
	const n = 100
	tails := []*sseClient{first}
	for range n - 1 {
		tails = append(tails, e.openSSE("/v1/topics/shared/events", nil))
	}
	if got := clients(); got > base+4 {
		t.Fatalf("%d Redis clients with %d tails, %d with one: connections grow with clients", got, n, base)
	}
	const events = 40
	for i := range events {
		if _, err := c.Publish(ctx, "shared", herald.Event{Key: fmt.Sprint(i % 7), Data: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for ti, s := range tails {
		last := map[string]string{}
		for range events {
			ev := s.next(t, "", 10*time.Second)
			p, id, _ := strings.Cut(ev.ID, "/")
			if prev, ok := last[p]; ok && !herald.StreamIDLess(prev, id) {
				t.Fatalf("tail %d: partition %s out of order: %s after %s", ti, p, id, prev)
			}
			last[p] = id
		}
	}
	if got := clients(); got > base+4 {
		t.Fatalf("%d Redis clients after delivery, %d before", got, base)
	}
}

// TestTailResumesAfterLastEventID: a tail reconnecting with Last-Event-ID
// gets every event after it (read by position), then live ones from the feed.
func TestTailResumesAfterLastEventID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	ctx := context.Background()
	var ps []herald.Position
	for i := range 30 {
		p, err := e.c.Publish(ctx, "resume-tail", herald.Event{Data: fmt.Appendf(nil, "%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	s := e.openSSE("/v1/topics/resume-tail/events", map[string]string{"Last-Event-ID": ps[9].String()})
	for i := 10; i < 30; i++ {
		ev := s.next(t, "", 5*time.Second)
		if ev.ID != ps[i].String() {
			t.Fatalf("event %d: id %s, want %s", i, ev.ID, ps[i])
		}
	}
	p, err := e.c.Publish(ctx, "resume-tail", herald.Event{Data: []byte("live")})
	if err != nil {
		t.Fatal(err)
	}
	if ev := s.next(t, "", 5*time.Second); ev.ID != p.String() {
		t.Fatalf("live event id %s, want %s", ev.ID, p)
	}
}

// TestChannelStreamsShareOneConnection: 20 channel streams (10 channels, a
// pattern) hold one Pub/Sub connection in all, and each gets its messages.
func TestChannelStreamsShareOneConnection(t *testing.T) {
	t.Parallel()
	rs := redistest.Own(t, redisproc.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := herald.New(ctx, herald.Config{URL: rs.URL()})
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
	if code, b := e.do("POST", "/v1/channels/room-0/messages", []byte("warm"), nil); code != 200 {
		t.Fatalf("broadcast: %d %s", code, b)
	}
	first := e.openSSE("/v1/channels/room-0", nil)
	base := clients()
	streams := []*sseClient{first}
	for i := 1; i < 20; i++ {
		streams = append(streams, e.openSSE(fmt.Sprintf("/v1/channels/room-%d", i%10), nil))
	}
	pat := e.openSSE("/v1/channels/room-*?pattern=true", nil)
	if got := clients(); got > base+1 {
		t.Fatalf("%d Redis clients with 21 channel streams, %d with one", got, base)
	}
	redistest.WaitFor(t, 5*time.Second, "one Redis subscriber of room-9", func() bool {
		n, err := c.NumSub(ctx, "room-9")
		return err == nil && n["room-9"] == 1
	})
	for i := range 10 {
		if code, b := e.do("POST", fmt.Sprintf("/v1/channels/room-%d/messages", i), []byte(fmt.Sprintf(`"m%d"`, i)), nil); code != 200 {
			t.Fatalf("broadcast: %d %s", code, b)
		}
	}
	for i, s := range streams {
		ev := s.next(t, "", 5*time.Second)
		if want := fmt.Sprintf(`"channel":"room-%d"`, i%10); !strings.Contains(string(ev.Data), want) {
			t.Fatalf("stream %d got %s, want %s", i, ev.Data, want)
		}
	}
	for range 10 {
		pat.next(t, "", 5*time.Second)
	}
}

// TestMonitorStreamsShareOneMonitor: two monitor streams with different
// filters, served from the server's one monitor, each see their own topics
// only.
func TestMonitorStreamsShareOneMonitor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	e.publish("mon-a1", "x", nil) // the topics exist: the monitor tails them from its start
	e.publish("mon-b1", "x", nil)
	ma := e.openSSE("/v1/monitor?topics=mon-a*&skip_channels=true", nil)
	mb := e.openSSE("/v1/monitor?topics=mon-b*&skip_channels=true", nil)
	// The shared monitor starts with the first stream; wait until it sees new events.
	redistest.WaitFor(t, 5*time.Second, "the monitor to show a new mon-a1 event", func() bool {
		e.publish("mon-a1", "probe", nil)
		select {
		case ev := <-ma.events:
			return strings.Contains(string(ev.Data), `"topic":"mon-a1"`)
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})
	e.publish("mon-b1", "y", nil)
	ev := mb.next(t, "", 5*time.Second)
	if !strings.Contains(string(ev.Data), `"topic":"mon-b1"`) {
		t.Fatalf("monitor b got %s", ev.Data)
	}
	for {
		select {
		case ev := <-ma.events:
			if strings.Contains(string(ev.Data), "mon-b1") {
				t.Fatalf("monitor a (topics=mon-a*) got %s", ev.Data)
			}
			continue
		case <-time.After(300 * time.Millisecond):
		}
		break
	}
	if got := metricSum(e, "herald_hub_feeds"); got != 0 {
		t.Fatalf("herald_hub_feeds %v: monitors are not live tails", got)
	}
}

// TestSlowTailDoesNotHoldUpOthers: a client that stops reading (its socket
// fills, its buffer overflows: it lags) does not slow the others down, and
// when it reads again it gets every event, in order, caught up by position.
func TestSlowTailDoesNotHoldUpOthers(t *testing.T) {
	defer gateway.SetFeedBuffer(2)() // lag soon; not parallel: no other test runs meanwhile
	// The write timeout is long: the slow client is slow, not gone (one
	// that takes nothing for sse.write_timeout is disconnected).
	e := newEnv(t, gateway.Config{SSE: gateway.SSEConfig{WriteTimeout: time.Minute}})
	ctx := context.Background()
	if _, err := e.c.Publish(ctx, "slow", herald.Event{Data: []byte("seed")}); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(e.url, "http://")
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error { // a small receive buffer, set before connecting
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	slow, err := d.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /v1/topics/slow/events HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	br := bufio.NewReader(slow)
	if l, err := br.ReadString('\n'); err != nil || !strings.Contains(l, "200") {
		t.Fatalf("slow client: %q %v", l, err)
	}
	fast := e.openSSE("/v1/topics/slow/events", nil)
	const n = 3000
	payload := strings.Repeat("x", 4000)
	for i := range n {
		if _, err := e.c.Publish(ctx, "slow", herald.Event{Data: fmt.Appendf(nil, "%d %s", i, payload)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n { // the fast client gets everything while the slow one reads nothing
		ev := fast.next(t, "", 10*time.Second)
		if d := decodeEvent(t, ev.Data).Data; !strings.HasPrefix(string(d), fmt.Sprintf(`"%d `, i)) {
			t.Fatalf("fast client: event %d is %.20s", i, d)
		}
	}
	if metricSum(e, "herald_hub_lagged_total") < 1 {
		t.Fatal("the slow client never lagged: the test did not test anything")
	}
	got := 0
	_ = slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	for got < n {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("slow client after %d events: %v", got, err)
		}
		if d, ok := strings.CutPrefix(l, "data: "); ok {
			var ev gateway.EventJSON
			if err := json.Unmarshal([]byte(d), &ev); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(ev.Data), fmt.Sprintf(`"%d `, got)) {
				t.Fatalf("slow client: event %d is %.20s (a gap or a repeat)", got, ev.Data)
			}
			got++
		}
	}
}

// TestStuckTailIsDisconnected: a client that takes nothing for
// sse.write_timeout is disconnected (its connection closed, its place in
// the hub freed); it would resume with Last-Event-ID.
func TestStuckTailIsDisconnected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{SSE: gateway.SSEConfig{WriteTimeout: 300 * time.Millisecond}})
	ctx := context.Background()
	if _, err := e.c.Publish(ctx, "stuck", herald.Event{Data: []byte("seed")}); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(e.url, "http://")
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	stuck, err := d.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	fmt.Fprintf(stuck, "GET /v1/topics/stuck/events HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	redistest.WaitFor(t, 5*time.Second, "one hub subscriber", func() bool { return metricSum(e, "herald_hub_subscribers") == 1 })
	payload := strings.Repeat("x", 16000)
	deadline := time.Now().Add(20 * time.Second)
	for metricSum(e, "herald_hub_subscribers") != 0 { // publish until its buffers are full and the write times out
		if time.Now().After(deadline) {
			t.Fatal("a client that reads nothing was not disconnected")
		}
		for range 50 {
			if _, err := e.c.Publish(ctx, "stuck", herald.Event{Data: []byte(payload)}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond) // publishing pace of this bounded loop
	}
	_ = stuck.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(io.Discard, stuck); err != nil { // what was sent, then the end
		t.Fatalf("the stuck client's connection did not end: %v", err)
	}
}

// TestMonitorStreamTopicsWithSlash: in a monitor's topics pattern '*' matches
// '/' too (path.Match's did not): topics=mon-s* and topics=* show the
// topics "mon-s/a" (existing when the monitor started) and "mon-s/b/c"
// (created after); '?' and classes still match one character.
func TestMonitorStreamTopicsWithSlash(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	e.publish("mon-s%2Fa", "x", nil)
	prefix := e.openSSE("/v1/monitor?topics=mon-s*&skip_channels=true", nil)
	all := e.openSSE("/v1/monitor?topics=*&skip_channels=true", nil)
	class := e.openSSE("/v1/monitor?topics="+url.QueryEscape("mon-s?[ab]*")+"&skip_channels=true", nil)
	for _, c := range []struct {
		s     *sseClient
		topic string
	}{{prefix, "mon-s/a"}, {prefix, "mon-s/b/c"}, {all, "mon-s/a"}, {class, "mon-s/b/c"}} {
		redistest.WaitFor(t, 10*time.Second, "the monitor to show an event of "+c.topic, func() bool {
			e.publish(url.PathEscape(c.topic), "probe", nil)
			for {
				select {
				case ev := <-c.s.events:
					if strings.Contains(string(ev.Data), `"topic":"`+c.topic+`"`) {
						return true
					}
					continue
				case <-time.After(200 * time.Millisecond):
				}
				return false
			}
		})
	}
	if code, b := e.do("GET", "/v1/monitor?topics="+url.QueryEscape("mon-["), nil, nil); code != 400 {
		t.Fatalf("a malformed pattern: %d %s, want 400", code, b)
	}
}

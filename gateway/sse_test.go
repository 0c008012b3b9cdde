package gateway_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestSSEResumeWithLastEventID: a client reads N events, disconnects, and
// reconnects with Last-Event-ID: it receives the rest with no gap, and not
// the ones it confirmed; the group has nothing pending once all are confirmed.
func TestSSEResumeWithLastEventID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	const total, firstRead = 50, 20
	first := e.openSSE("/v1/topics/resume/events?group=readers&client=app-1&from=beginning", nil)
	first.next(t, "session", 5*time.Second)
	var batch []string
	for i := 0; i < total; i++ {
		batch = append(batch, fmt.Sprintf(`{"data":{"n":%d}}`, i))
	}
	e.publish("resume", "["+strings.Join(batch, ",")+"]", map[string]string{"Content-Type": "application/json"})
	var seen []int
	lastID := ""
	for len(seen) < firstRead {
		ev := first.next(t, "", 5*time.Second)
		var d struct{ N int }
		_ = json.Unmarshal(decodeEvent(t, ev.Data).Data, &d)
		seen = append(seen, d.N)
		lastID = ev.ID
	}
	first.close() // the reconnect below takes the session over, noticed or not

	second := e.openSSE("/v1/topics/resume/events?group=readers&client=app-1", map[string]string{"Last-Event-ID": lastID})
	second.next(t, "session", 5*time.Second)
	for len(seen) < total {
		ev := second.next(t, "", 5*time.Second)
		var d struct{ N int }
		_ = json.Unmarshal(decodeEvent(t, ev.Data).Data, &d)
		seen = append(seen, d.N)
		lastID = ev.ID
	}
	// Keyless events are handled in parallel, so they may reach the client
	// in any order; what matters is that each arrives exactly once.
	sorted := slices.Clone(seen)
	slices.Sort(sorted)
	for i, n := range sorted {
		if n != i {
			t.Fatalf("events sorted: %d is n=%d: gap or duplicate; got %v", i, n, seen)
		}
	}
	second.noMoreEvents(t, 300*time.Millisecond)
	// Confirm the rest with the ack endpoint: the group has nothing pending.
	code, b := e.do("POST", "/v1/topics/resume/groups/readers/ack", []byte(`{"client":"app-1","up_to":"`+lastID+`"}`), nil)
	if code != 200 || !strings.Contains(string(b), `"settled":30`) {
		t.Fatalf("ack: %d %s", code, b)
	}
	waitPending(t, e, "resume", "readers", 0)
}

func waitPending(t *testing.T, e *env, topic, group string, want int64) {
	t.Helper()
	redistest.WaitFor(t, 5*time.Second, fmt.Sprintf("%d pending in group %s of %s", want, group, topic), func() bool {
		_, b := e.do("GET", "/v1/topics/"+topic+"/groups", nil, nil)
		var r struct{ Groups []gateway.GroupJSON }
		_ = json.Unmarshal(b, &r)
		for _, g := range r.Groups {
			if g.Name == group && g.Pending == want {
				return true
			}
		}
		return false
	})
}

// TestSSEReconnectWithoutClientID: an EventSource reconnects to the same
// URL (no client id) with Last-Event-ID; the session is found by it: the
// event confirmed by the header does not come again, the others do, and
// those the first connection saw after it come first, in the order seen.
func TestSSEReconnectWithoutClientID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	s1 := e.openSSE("/v1/topics/es/events?group=g&from=beginning", nil)
	s1.next(t, "session", 5*time.Second)
	// Keyless events run in parallel, so they are sent in any order (one key
	// would hold each back until the one before it is confirmed).
	e.publish("es", `[{"data":1},{"data":2},{"data":3}]`, map[string]string{"Content-Type": "application/json"})
	ev := s1.next(t, "", 5*time.Second)
	first := string(decodeEvent(t, ev.Data).Data)
	s1.close()
	var seenAfter []string // what the first connection read after ev
	for drained := false; !drained; {
		select {
		case x, ok := <-s1.events:
			if !ok {
				drained = true
			} else if x.Event == "" {
				seenAfter = append(seenAfter, string(decodeEvent(t, x.Data).Data))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the first stream's reader did not end after close")
		}
	}
	t.Logf("the first connection read %s, then %v", first, seenAfter)
	waitMetric(t, e, `herald_streams{kind="sse_group"} 0`) // the session waits for its client
	s2 := e.openSSE("/v1/topics/es/events?group=g", map[string]string{"Last-Event-ID": ev.ID})
	s2.next(t, "session", 5*time.Second)
	got := []string{}
	for len(got) < 2 {
		got = append(got, string(decodeEvent(t, s2.next(t, "", 5*time.Second).Data).Data))
	}
	var want []string
	for _, d := range []string{"1", "2", "3"} {
		if d != first {
			want = append(want, d)
		}
	}
	if sorted := slices.Sorted(slices.Values(got)); !slices.Equal(sorted, want) {
		t.Fatalf("first connection confirmed %s; after reconnect got %v, want %v in some order", first, got, want)
	}
	if len(seenAfter) > len(got) || !slices.Equal(got[:len(seenAfter)], seenAfter) {
		t.Fatalf("after reconnect got %v; the first connection was sent %v after %s, which must come again first, in that order", got, seenAfter, first)
	}
	s2.noMoreEvents(t, 300*time.Millisecond)
}

// TestSSEAutoAckAndNack covers ack=auto and a permanent nack to the dead letters.
func TestSSEAutoAckAndNack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	auto := e.openSSE("/v1/topics/aa/events?group=auto&ack=auto&from=beginning", nil)
	auto.next(t, "session", 5*time.Second)
	e.publish("aa", "one", nil)
	auto.next(t, "", 5*time.Second)
	waitPending(t, e, "aa", "auto", 0)

	s := e.openSSE("/v1/topics/aa/events?group=manual&client=m1&from=beginning", nil)
	s.next(t, "session", 5*time.Second)
	ev := s.next(t, "", 5*time.Second)
	code, b := e.do("POST", "/v1/topics/aa/groups/manual/ack", []byte(`{"client":"m1","positions":["`+ev.ID+`"],"nack":true,"permanent":true,"reason":"bad payload"}`), nil)
	if code != 200 {
		t.Fatalf("nack: %d %s", code, b)
	}
	redistest.WaitFor(t, 5*time.Second, "the dead letter of group manual", func() bool {
		_, b := e.do("GET", "/v1/topics/aa/deadletters?group=manual", nil, nil)
		return strings.Contains(string(b), "bad payload")
	})
	code, b = e.do("POST", "/v1/topics/aa/deadletters/redrive", []byte(`{"group":"manual"}`), nil)
	if code != 200 || !strings.Contains(string(b), `"redriven":1`) {
		t.Fatalf("redrive: %d %s", code, b)
	}
	again := s.next(t, "", 5*time.Second)
	if again.ID != ev.ID {
		t.Fatalf("redriven event %s, want %s", again.ID, ev.ID)
	}
}

// TestSSETail: without a group, a live tail from now, from=beginning, and
// a resume after Last-Event-ID.
func TestSSETail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	e.publish("tail", "before", nil)
	now := e.openSSE("/v1/topics/tail/events", nil)
	all := e.openSSE("/v1/topics/tail/events?from=beginning", nil) // tails send headers once they follow the topic
	e.publish("tail", "after", nil)
	if d := decodeEvent(t, now.next(t, "", 5*time.Second).Data); string(d.Data) != `"after"` {
		t.Fatalf("tail from now got %s", d.Data)
	}
	first := all.next(t, "", 5*time.Second)
	if d := decodeEvent(t, first.Data); string(d.Data) != `"before"` {
		t.Fatalf("tail from beginning got %s", d.Data)
	}
	resumed := e.openSSE("/v1/topics/tail/events", map[string]string{"Last-Event-ID": first.ID})
	if d := decodeEvent(t, resumed.next(t, "", 5*time.Second).Data); string(d.Data) != `"after"` {
		t.Fatalf("resumed tail got %s", d.Data)
	}
	// Accept: application/json lists stored events instead.
	code, b := e.do("GET", "/v1/topics/tail/events?limit=10", nil, map[string]string{"Accept": "application/json"})
	if code != 200 || !strings.Contains(string(b), `"before"`) || !strings.Contains(string(b), `"after"`) {
		t.Fatalf("list: %d %s", code, b)
	}
}

// TestChannelsSSE: POST to a channel reaches SSE listeners of the channel and of a pattern.
func TestChannelsSSE(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	ns := strings.ReplaceAll(t.Name(), "/", "_")
	exact := e.openSSE("/v1/channels/"+ns+".chat", nil)
	pat := e.openSSE("/v1/channels/"+ns+".*?pattern=true", nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, b := e.do("POST", "/v1/channels/"+ns+".chat/messages", []byte(`{"hi":1}`), nil)
		if code != 200 {
			t.Fatalf("broadcast: %d %s", code, b)
		}
		if strings.Contains(string(b), `"receivers":2`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // retry pacing of this bounded loop
	}
	for _, s := range []*sseClient{exact, pat} {
		var m gateway.ChannelMessageJSON
		_ = json.Unmarshal(s.next(t, "", 5*time.Second).Data, &m)
		if m.Channel != ns+".chat" || string(m.Data) != `{"hi":1}` {
			t.Fatalf("channel message %+v", m)
		}
	}
}

// noMoreEvents fails t if a data event (not a control event such as a
// heartbeat) arrives on s within d.
func (s *sseClient) noMoreEvents(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case ev := <-s.events:
		if ev.Event == "" {
			t.Fatalf("unexpected extra event %s", ev.Data)
		}
	case <-time.After(d):
	}
}

// TestTailOfMissingTopicAddsNoSeries: live tails of topics that do not
// exist add no metric series (each name used to add 19 lines to /metrics
// for good); a tail of a topic created after it opened gets its events,
// and the topic's series come with the first one.
func TestTailOfMissingTopicAddsNoSeries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	for i := range 30 {
		if code, b := e.streamStatus(fmt.Sprintf("/v1/topics/nosuch-%d/events", i), nil); code != 200 {
			t.Fatalf("tail of a topic not created yet: %d %s", code, b)
		}
	}
	if _, m := e.do("GET", "/metrics", nil, nil); strings.Contains(string(m), "nosuch-") {
		t.Fatalf("tails of missing topics added metric series:\n%s", grepLines(string(m), "nosuch-"))
	}
	s := e.openSSE("/v1/topics/made-later/events", nil)
	e.publish("made-later", "x", nil)
	if d := decodeEvent(t, s.next(t, "", 5*time.Second).Data); string(d.Data) != `"x"` {
		t.Fatalf("tail of a topic created after it opened got %s", d.Data)
	}
	if got := metricSum(e, "herald_deliveries_sent_total", `topic="made-later"`, `via="sse"`); got != 1 {
		t.Fatalf("herald_deliveries_sent_total of the tailed topic: %v, want 1", got)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestStreamLimits: streams beyond a key's share get 429, beyond the
// server's total 503, each with a JSON error and counted; a closed stream
// frees its place.
func TestStreamLimits(t *testing.T) {
	t.Parallel()
	keys := []gateway.APIKey{
		{Name: "a", SHA256: gateway.HashKey("key-a"), Subscribe: []string{"*"}, Admin: []string{"*"}},
		{Name: "b", SHA256: gateway.HashKey("key-b"), Subscribe: []string{"*"}},
	}
	// A live tail notices a client that left at its next write: a short
	// heartbeat makes that quick.
	e := newEnv(t, gateway.Config{Keys: keys, Limits: gateway.Limits{MaxStreams: 3, MaxStreamsPerKey: 2},
		SSE: gateway.SSEConfig{Heartbeat: 50 * time.Millisecond}})
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	a1 := e.openSSE("/v1/topics/lim/events", bearer("key-a"))
	e.openSSE("/v1/topics/lim/events", bearer("key-a"))
	if code := e.call(t, "GET", "/v1/topics/lim/events", "", "key-a", true); code != 429 {
		t.Fatalf("third stream of key a: %d, want 429", code)
	}
	e.openSSE("/v1/topics/lim/events", bearer("key-b"))
	if code := e.call(t, "GET", "/v1/topics/lim/events", "", "key-b", true); code != 503 {
		t.Fatalf("fourth stream of the server: %d, want 503", code)
	}
	code, b := e.do("GET", "/v1/topics/lim/events", nil, map[string]string{"Authorization": "Bearer key-b", "Accept": "text/event-stream"})
	if code != 503 || !strings.Contains(string(b), gateway.CodeTooManyConnections) {
		t.Fatalf("refusal body: %d %s", code, b)
	}
	a1.close()
	redistest.WaitFor(t, 5*time.Second, "a closed stream to free its place", func() bool {
		return e.call(t, "GET", "/v1/topics/lim/events", "", "key-b", true) == 200
	})
	_, m := e.do("GET", "/metrics", nil, bearer("key-a"))
	if !strings.Contains(string(m), `herald_limited_total{limit="streams"}`) || !strings.Contains(string(m), `herald_limited_total{limit="streams_per_key"}`) {
		t.Fatalf("refusals are not counted in herald_limited_total")
	}
}

// TestWebSocketSubscriptionLimit: a WebSocket may hold at most
// MaxWSSubscriptions subscriptions (it is not one Redis reader each).
func TestWebSocketSubscriptionLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{Limits: gateway.Limits{MaxWSSubscriptions: 2}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.CloseNow() }()
	for _, id := range []string{"s1", "s2", "s3"} {
		b, _ := json.Marshal(gateway.WSRequest{Op: "subscribe", ID: id, Topic: "wslim"})
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		_, rb, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m gateway.WSMessage
		_ = json.Unmarshal(rb, &m)
		want := "subscribed"
		if id == "s3" {
			want = "error"
		}
		if m.Type != want || (want == "error" && m.Error.Code != gateway.CodeTooManySubscriptions) {
			t.Fatalf("subscribe %s: %s, want %s", id, rb, want)
		}
	}
}

// TestAccessLog: one structured line per request with method, path,
// status, bytes, duration, key name and remote address, and no secret
// (the access_token of the query is not logged).
func TestAccessLog(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, nil))
	keys := []gateway.APIKey{{Name: "reader", SHA256: gateway.HashKey("secret-token"), Admin: []string{"*"}}}
	e := newEnv(t, gateway.Config{Keys: keys, Logger: log})
	if code, _ := e.do("GET", "/v1/topics?access_token=secret-token", nil, nil); code != 200 {
		t.Fatalf("GET /v1/topics: %d", code)
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	var line map[string]any
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `"http request"`) {
			_ = json.Unmarshal([]byte(l), &line)
		}
	}
	if line == nil {
		t.Fatalf("no access log line in %s", out)
	}
	for k, want := range map[string]any{"method": "GET", "path": "/v1/topics", "status": float64(200), "key": "reader"} {
		if line[k] != want {
			t.Errorf("access log %s = %v, want %v (%v)", k, line[k], want, line)
		}
	}
	for _, k := range []string{"bytes", "duration", "remote"} {
		if _, ok := line[k]; !ok {
			t.Errorf("access log lacks %s: %v", k, line)
		}
	}
	if strings.Contains(out, "secret-token") {
		t.Fatalf("the log holds the key: %s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestSessionsPerKeyLimit: one API key (or, with authentication off, one
// remote address) holds at most limits.max_sessions_per_key group
// sessions, connected or within their resume window: connecting and
// disconnecting in a loop fills its own share (429), not the server's;
// other keys still get sessions, and reconnecting to a session it holds
// is not a new one.
func TestSessionsPerKeyLimit(t *testing.T) {
	t.Parallel()
	keys := []gateway.APIKey{
		{Name: "a", SHA256: gateway.HashKey("key-a"), Subscribe: []string{"*#*"}, Admin: []string{"*"}},
		{Name: "b", SHA256: gateway.HashKey("key-b"), Subscribe: []string{"*#*"}},
	}
	e := newEnv(t, gateway.Config{Keys: keys, Limits: gateway.Limits{MaxSessionsPerKey: 3}})
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	for i := range 3 { // each session outlives its connection by the resume window (60 s)
		if code, b := e.streamStatus(fmt.Sprintf("/v1/topics/spk/events?group=g&client=a%d", i), bearer("key-a")); code != 200 {
			t.Fatalf("session %d of key a: %d %s", i, code, b)
		}
	}
	code, b := e.streamStatus("/v1/topics/spk/events?group=g&client=a3", bearer("key-a"))
	if code != http.StatusTooManyRequests || !strings.Contains(string(b), gateway.CodeTooManyConnections) || !strings.Contains(string(b), "limits.max_sessions_per_key") {
		t.Fatalf("fourth session of key a: %d %s, want 429 naming limits.max_sessions_per_key", code, b)
	}
	if code, b := e.streamStatus("/v1/topics/spk/events?group=g&client=a1", bearer("key-a")); code != 200 {
		t.Fatalf("reconnecting to a session key a holds: %d %s", code, b)
	}
	if code, b := e.streamStatus("/v1/topics/spk/events?group=g&client=b0", bearer("key-b")); code != 200 {
		t.Fatalf("a session of key b: %d %s", code, b)
	}
	if _, m := e.do("GET", "/metrics", nil, bearer("key-a")); !strings.Contains(string(m), `herald_limited_total{limit="sessions_per_key"} 1`) {
		t.Fatal("the refusal is not counted in herald_limited_total")
	}

	// Without keys, the share is the remote address's; expired sessions free it.
	open := newEnv(t, gateway.Config{Limits: gateway.Limits{MaxSessionsPerKey: 2}, SSE: gateway.SSEConfig{ResumeWindow: 200 * time.Millisecond}})
	for range 2 {
		if code, b := open.streamStatus("/v1/topics/spa/events?group=g", nil); code != 200 {
			t.Fatalf("session without keys: %d %s", code, b)
		}
	}
	code, b = open.streamStatus("/v1/topics/spa/events?group=g", nil)
	if code != http.StatusTooManyRequests || !strings.Contains(string(b), "address 127.0.0.1") {
		t.Fatalf("third session of one address: %d %s, want 429 naming the address", code, b)
	}
	redistest.WaitFor(t, 10*time.Second, "expired sessions to free the address's share", func() bool {
		code, _ := open.streamStatus("/v1/topics/spa/events?group=g", nil)
		return code == 200
	})
}

package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
)

// TestHostCheckStopsDNSRebinding: a loopback gateway (AllowedHosts set as
// the server sets them) refuses a request whose Host is another name, as a
// page on evil.example rebound to 127.0.0.1 would send; loopback names pass.
func TestHostCheckStopsDNSRebinding(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{AllowedHosts: []string{"localhost", "*.localhost", "127.0.0.1", "::1"}})
	for _, c := range []struct {
		host string
		want int
	}{
		{"evil.example", 421},
		{"evil.example:" + strings.Split(e.url, ":")[2], 421},
		{"127.0.0.1.evil.example", 421},
		{"localhost:8080", 200},
		{"127.0.0.1", 200},
		{"[::1]:8080", 200},
		{"app.localhost", 200},
	} {
		req, _ := http.NewRequest("GET", e.url+"/v1/topics", nil)
		req.Host = c.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Host %q: %d, want %d", c.host, resp.StatusCode, c.want)
		}
	}
	// The WebSocket upgrade is checked too.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/v1/ws",
		&websocket.DialOptions{Host: "evil.example"})
	if err == nil || resp == nil || resp.StatusCode != 421 {
		t.Fatalf("WebSocket with Host evil.example: %v %v, want 421", err, resp)
	}
}

// TestCrossSiteSimpleRequestRefused: a cross-site text/plain POST (which a
// browser sends without a preflight) does not publish; the same POST from
// the same origin, from a non-browser client, or from a CORS-allowed
// origin does.
func TestCrossSiteSimpleRequestRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{CORS: gateway.CORS{AllowedOrigins: []string{"https://app.example"}}})
	host := strings.TrimPrefix(e.url, "http://")
	for _, c := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"cross-site text/plain", map[string]string{"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403},
		{"cross-site by Sec-Fetch-Site", map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, 403},
		{"opaque origin", map[string]string{"Origin": "null", "Content-Type": "text/plain"}, 403},
		{"same origin", map[string]string{"Origin": "http://" + host, "Content-Type": "text/plain"}, 200},
		{"no browser headers", map[string]string{"Content-Type": "text/plain"}, 200},
		{"CORS-allowed origin", map[string]string{"Origin": "https://app.example", "Content-Type": "text/plain"}, 200},
	} {
		code, b := e.do("POST", "/v1/topics/xsite/events", []byte("x"), c.hdr)
		if code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, b, c.want)
		}
		if c.want == 403 && !strings.Contains(string(b), gateway.CodeCrossOrigin) {
			t.Errorf("%s: body %s lacks code %s", c.name, b, gateway.CodeCrossOrigin)
		}
	}
	es, err := e.c.Events(context.Background(), "xsite", herald.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 {
		t.Fatalf("%d events stored, want 3 (the refused requests published nothing)", len(es))
	}
	// A WebSocket from a foreign origin is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/v1/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("WebSocket from origin evil.example: %v, want 403", err)
	}
}

// TestSessionBoundToKey: a session id is 128 random bits, and another key
// that learns it can neither attach to the session nor settle its events.
func TestSessionBoundToKey(t *testing.T) {
	t.Parallel()
	keys := []gateway.APIKey{
		{Name: "a", SHA256: gateway.HashKey("key-a"), Subscribe: []string{"own#g"}},
		{Name: "b", SHA256: gateway.HashKey("key-b"), Subscribe: []string{"own#g"}},
	}
	e := newEnv(t, gateway.Config{Keys: keys})
	a := e.openSSE("/v1/topics/own/events?group=g", map[string]string{"Authorization": "Bearer key-a"})
	client := a.resp.Header.Get("Herald-Client")
	if len(client) != 33 || client[0] != 'c' {
		t.Fatalf("client id %q: want c + 32 hex digits (128 bits)", client)
	}
	a.next(t, "session", 5*time.Second)
	if code := e.call(t, "GET", "/v1/topics/own/events?group=g&client="+client, "", "key-b", true); code != 403 {
		t.Fatalf("key b attaching to key a's session: %d, want 403", code)
	}
	code, b := e.do("POST", "/v1/topics/own/groups/g/ack", []byte(`{"client":"`+client+`","positions":["0/1-0"]}`),
		map[string]string{"Authorization": "Bearer key-b"})
	if code != 403 {
		t.Fatalf("key b acking for key a's session: %d %s, want 403", code, b)
	}
	code, b = e.do("POST", "/v1/topics/own/groups/g/ack", []byte(`{"client":"`+client+`","positions":["0/1-0"]}`),
		map[string]string{"Authorization": "Bearer key-a"})
	if code != 200 {
		t.Fatalf("key a acking its own session: %d %s", code, b)
	}
}

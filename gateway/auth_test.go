package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/route"
)

// TestAuthorizationMatrix: every endpoint x (no key, wrong key, key without
// the permission, key with it) gives 401, 401, 403, 2xx (101 for the
// WebSocket upgrade). Public probes answer without a key.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	r, err := route.Parse([]byte("default: [mx.routed]\n"))
	if err != nil {
		t.Fatal(err)
	}
	keys := []gateway.APIKey{
		{Name: "pub", SHA256: gateway.HashKey("pub-key"), Publish: []string{"mx*", "channel:mx*"}},
		{Name: "sub", SHA256: gateway.HashKey("sub-key"), Subscribe: []string{"mx*#g", "channel:mx*"}},
		{Name: "tail", SHA256: gateway.HashKey("tail-key"), Subscribe: []string{"mx*"}},
		{Name: "adm", SHA256: gateway.HashKey("adm-key"), Admin: []string{"*"}},
		{Name: "none", SHA256: gateway.HashKey("none-key")},
	}
	e := newEnv(t, gateway.Config{Keys: keys, Router: r})
	type ep struct {
		method, path, body, key string
		stream                  bool
	}
	eps := []ep{
		{"POST", "/v1/topics/mx/events", "x", "pub-key", false},
		{"GET", "/v1/topics/mx/events?group=g&client=c1", "", "sub-key", true},
		{"POST", "/v1/topics/mx/groups/g/ack", `{"client":"c1","positions":["0/1-0"]}`, "sub-key", false},
		{"POST", "/v1/events", `{"data":1}`, "pub-key", false},
		{"POST", "/v1/channels/mxc/messages", "hi", "pub-key", false},
		{"GET", "/v1/channels/mxc", "", "sub-key", true},
		{"GET", "/v1/ws", "", "sub-key", true},
		{"GET", "/v1/topics", "", "adm-key", false},
		{"GET", "/v1/topics/mx", "", "adm-key", false},
		{"PUT", "/v1/topics/mx2", "", "adm-key", false},
		{"DELETE", "/v1/topics/mx2", "", "adm-key", false},
		{"GET", "/v1/topics/mx/groups", "", "adm-key", false},
		{"POST", "/v1/topics/mx/groups/g/seek", `{"to":"end"}`, "adm-key", false},
		{"DELETE", "/v1/topics/mx/groups/g", "", "adm-key", false},
		{"GET", "/v1/topics/mx/deadletters", "", "adm-key", false},
		{"POST", "/v1/topics/mx/deadletters/redrive", "", "adm-key", false},
		{"DELETE", "/v1/topics/mx/deadletters", "", "adm-key", false},
		{"GET", "/v1/topics/mx/scheduled", "", "adm-key", false},
		{"DELETE", "/v1/topics/mx/scheduled/nosuch", "", "adm-key", false},
		{"GET", "/v1/topics/mx/losses", "", "adm-key", false},
		{"GET", "/v1/channels", "", "adm-key", false},
		{"GET", "/v1/monitor", "", "adm-key", true},
		{"GET", "/v1/health", "", "adm-key", false},
		{"GET", "/metrics", "", "adm-key", false},
	}
	covered := map[string]bool{}
	for _, x := range eps {
		p, _, _ := strings.Cut(x.path, "?")
		covered[x.method+" "+p] = true
	}
	public := []string{"/healthz", "/readyz", "/v1/openapi.json"}
	for _, rt := range e.g.Routes() {
		method, path, _ := strings.Cut(rt, " ")
		found := false
		for c := range covered {
			cm, cp, _ := strings.Cut(c, " ")
			if cm == method && matchPattern(path, cp) {
				found = true
			}
		}
		for _, p := range public {
			found = found || (method == "GET" && p == path)
		}
		if !found {
			t.Errorf("route %s is not in the authorization matrix", rt)
		}
	}
	for _, x := range eps {
		for _, c := range []struct {
			name, key string
			want      int
		}{{"no key", "", 401}, {"wrong key", "nope", 401}, {"key without permission", "none-key", 403}, {"key with permission", x.key, 0}} {
			code := e.call(t, x.method, x.path, x.body, c.key, x.stream)
			ok := code == c.want
			if c.want == 0 {
				ok = code >= 200 && code < 300 || code == 101
			}
			if !ok {
				t.Errorf("%s %s with %s: %d, want %d", x.method, x.path, c.name, code, c.want)
			}
		}
	}
	// Groups are part of the grant: a key that may tail a topic may not
	// join its groups, nor may a key join a group its pattern does not name.
	for _, c := range []struct {
		method, path, body, key string
		stream                  bool
	}{
		{"GET", "/v1/topics/mx/events?group=g&client=c2", "", "tail-key", true},
		{"POST", "/v1/topics/mx/groups/g/ack", `{"client":"c1","positions":["0/1-0"]}`, "tail-key", false},
		{"GET", "/v1/topics/mx/events?group=other&client=c3", "", "sub-key", true},
		{"POST", "/v1/topics/mx/groups/other/ack", `{"client":"c1","positions":["0/1-0"]}`, "sub-key", false},
		{"GET", "/v1/topics/mx/events?group=g&limit=1", "", "tail-key", false},
	} {
		if code := e.call(t, c.method, c.path, c.body, c.key, c.stream); code != 403 {
			t.Errorf("%s %s with %s: %d, want 403 (no group grant)", c.method, c.path, c.key, code)
		}
	}
	if code := e.call(t, "GET", "/v1/topics/mx/events", "", "tail-key", true); code != 200 {
		t.Errorf("live tail with a topic-only grant: %d, want 200", code)
	}
	for _, p := range public {
		if code, b := e.do("GET", p, nil, nil); code != 200 {
			t.Errorf("public %s: %d %s", p, code, b)
		}
	}
	// A key in a query parameter works for GETs only.
	if code, _ := e.do("GET", "/v1/topics?access_token=adm-key", nil, nil); code != 200 {
		t.Errorf("access_token on GET: %d", code)
	}
	if code, _ := e.do("POST", "/v1/topics/mx/events?access_token=pub-key", []byte("x"), nil); code != 401 {
		t.Errorf("access_token on POST: %d, want 401", code)
	}
}

// matchPattern matches a concrete path against a mux pattern with {wildcards}.
func matchPattern(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if !strings.HasPrefix(ps[i], "{") && ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// call sends one request with a key (Bearer) and returns the status; for
// streams it returns as soon as the headers arrive.
func (e *env) call(t *testing.T, method, path, body, key string, stream bool) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hdr := http.Header{}
	if key != "" {
		hdr.Set("Authorization", "Bearer "+key)
	}
	if path == "/v1/ws" {
		c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+path, &websocket.DialOptions{HTTPHeader: hdr})
		if err != nil {
			if resp == nil {
				t.Fatal(err)
			}
			return resp.StatusCode
		}
		c.Close(websocket.StatusNormalClosure, "")
		return resp.StatusCode
	}
	req, _ := http.NewRequestWithContext(ctx, method, e.url+path, bytes.NewReader([]byte(body)))
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !stream {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode >= 300 && key != "" && !strings.Contains(b.String(), `"error"`) {
			t.Errorf("%s %s: %d without a JSON error body: %s", method, path, resp.StatusCode, b.String())
		}
	}
	return resp.StatusCode
}

package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
	"github.com/heraldbus/herald/route"
)

func TestPublishModes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	ctJSON := map[string]string{"Content-Type": "application/json"}
	// Plain body with query metadata and an Idempotency-Key.
	pr := e.publish("modes", "hello", map[string]string{"Content-Type": "text/plain", "Idempotency-Key": "k-1",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	if len(pr.Positions) != 1 || pr.Positions[0].EventID != "k-1" || pr.Positions[0].Duplicate {
		t.Fatalf("plain: %+v", pr)
	}
	dup := e.publish("modes", "hello", map[string]string{"Content-Type": "text/plain", "Idempotency-Key": "k-1"})
	if !dup.Positions[0].Duplicate || dup.Positions[0].Position != pr.Positions[0].Position {
		t.Fatalf("retry with the same Idempotency-Key: %+v, want the first position as a duplicate", dup)
	}
	// Envelope batch.
	code, b := e.do("POST", "/v1/topics/modes/events?key=ignored", []byte(`[{"data":{"n":1},"key":"a"},{"data":"t","content_type":"text/plain"},{"data_base64":"AP8="}]`), ctJSON)
	if code != 200 || strings.Count(string(b), `"position"`) != 3 {
		t.Fatalf("envelope batch: %d %s", code, b)
	}
	// CloudEvents structured, batch and binary.
	e.publish("modes", `{"specversion":"1.0","id":"ce-1","source":"/t","type":"x","data":{"ce":true}}`, map[string]string{"Content-Type": "application/cloudevents+json"})
	e.publish("modes", `[{"specversion":"1.0","id":"ce-2","source":"/t","type":"x"},{"specversion":"1.0","id":"ce-3","source":"/t","type":"x","data":1}]`,
		map[string]string{"Content-Type": "application/cloudevents-batch+json; charset=utf-8"})
	e.publish("modes", `bin`, map[string]string{"ce-specversion": "1.0", "ce-id": "ce-4", "ce-source": "/t", "ce-type": "x", "Content-Type": "text/plain"})

	ctx := t.Context()
	evs, err := e.c.Events(ctx, "modes", herald.Query{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 8 {
		t.Fatalf("stored %d events, want 8", len(evs))
	}
	if evs[0].Headers["traceparent"] == "" || string(evs[0].Data) != "hello" || evs[0].ID != "k-1" {
		t.Fatalf("first event %+v", evs[0])
	}
	if string(evs[3].Data) != "\x00\xff" || evs[1].Key != "a" || string(evs[2].Data) != "t" {
		t.Fatalf("envelope events: %+v", evs[1:4])
	}
	if evs[4].ID != "ce-1" || string(evs[4].Data) != `{"ce":true}` || evs[6].ID != "ce-3" || evs[7].ID != "ce-4" || string(evs[7].Data) != "bin" {
		t.Fatalf("cloudevents: %+v", evs[4:])
	}
}

func TestPublishErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{MaxBodyBytes: 1024, MaxBatch: 2})
	cases := []struct {
		name, path, body string
		hdr              map[string]string
		code             int
		errCode          string
	}{
		{"raw JSON without envelope", "/v1/topics/t/events", `{"order":1}`, map[string]string{"Content-Type": "application/json"}, 400, "invalid_request"},
		{"bad topic", "/v1/topics/bad%20name/events", `x`, nil, 400, "invalid_request"},
		{"empty body", "/v1/topics/t/events", ``, nil, 400, "invalid_request"},
		{"too big", "/v1/topics/t/events", strings.Repeat("x", 2000), nil, 413, "payload_too_large"},
		{"batch too big", "/v1/topics/t/events", `[{"data":1},{"data":2},{"data":3}]`, map[string]string{"Content-Type": "application/json"}, 413, "payload_too_large"},
		{"bad cloudevent", "/v1/topics/t/events", `{"id":"x"}`, map[string]string{"Content-Type": "application/cloudevents+json"}, 400, "invalid_request"},
		{"bad partition", "/v1/topics/t/events?partition=9", `x`, nil, 400, "invalid_request"},
		{"no rules", "/v1/events", `{"data":1}`, map[string]string{"Content-Type": "application/json"}, 404, "no_rules"},
		{"unknown topic info", "/v1/topics/nope", ``, nil, 0, ""},
	}
	for _, c := range cases {
		method := "POST"
		if c.code == 0 {
			method, c.code, c.errCode = "GET", 404, "topic_not_found"
		}
		code, b := e.do(method, c.path, []byte(c.body), c.hdr)
		var eb struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(b, &eb)
		if code != c.code || eb.Error.Code != c.errCode || eb.Error.Message == "" {
			t.Errorf("%s: got %d %s, want %d %s", c.name, code, b, c.code, c.errCode)
		}
	}
}

func TestRoutedPublish(t *testing.T) {
	t.Parallel()
	r, err := route.Parse([]byte("rules:\n  - name: big\n    when: data.total > 100\n    to: [orders.big]\ndefault: [orders.small]\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, gateway.Config{Router: r})
	code, b := e.do("POST", "/v1/events", []byte(`{"data":{"total":500}}`), map[string]string{"Content-Type": "application/json"})
	if code != 200 || !strings.Contains(string(b), `"destination":"orders.big"`) {
		t.Fatalf("routed: %d %s", code, b)
	}
	redistest.WaitFor(t, 2*time.Second, "the routed event stored in orders.big", func() bool {
		ti, err := e.c.TopicInfo(t.Context(), "orders.big")
		return err == nil && ti.Length == 1
	})
}

func TestAdminAndHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	code, b := e.do("PUT", "/v1/topics/adm", []byte(`{"partitions":3,"max_age":"24h"}`), nil)
	if code != 200 || !strings.Contains(string(b), `"partitions":3`) {
		t.Fatalf("create: %d %s", code, b)
	}
	if code, b := e.do("GET", "/v1/topics/adm/groups", nil, nil); code != 200 || !strings.Contains(string(b), `"groups":[]`) {
		t.Fatalf("groups of a topic nothing was published to: %d %s", code, b)
	}
	e.publish("adm", "x", nil)
	if _, err := e.c.Subscribe(t.Context(), "adm", "g1", herald.HandlerFunc(func(context.Context, *herald.Message) error { return nil })); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/v1/topics", "/v1/topics/adm", "/v1/topics/adm/groups", "/v1/topics/adm/deadletters", "/v1/channels",
		"/v1/health", "/healthz", "/readyz", "/metrics", "/v1/openapi.json"} {
		if code, b := e.do("GET", p, nil, nil); code != 200 {
			t.Errorf("GET %s: %d %s", p, code, b)
		}
	}
	_, b = e.do("GET", "/metrics", nil, nil)
	for _, m := range []string{"herald_http_requests_total", "herald_publish_events_total", "herald_degraded_publishes_total", "herald_topic_events"} {
		if !strings.Contains(string(b), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if code, b := e.do("DELETE", "/v1/topics/adm", nil, nil); code != 200 {
		t.Fatalf("delete: %d %s", code, b)
	}
}

// TestOpenAPIListsEveryRoute: the document served at /v1/openapi.json names every endpoint.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	_, b := e.do("GET", "/v1/openapi.json", nil, nil)
	if err := json.Unmarshal(b, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi: %v %s", err, doc.OpenAPI)
	}
	for _, r := range e.g.Routes() {
		method, path, _ := strings.Cut(r, " ")
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("openapi.json lacks %s", r)
		}
	}
}

// TestBodyReadErrors: a body that cannot be read (a malformed chunked
// encoding) is the client's error, 400, not a Redis one (it used to answer
// 503 "Redis did not complete" and count in herald_redis_errors_total);
// a body over max_body_bytes is 413 on every endpoint that reads one.
func TestBodyReadErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{MaxBodyBytes: 64})
	for _, path := range []string{"/v1/topics/bodyerr/events", "/v1/channels/bodyerr/messages"} {
		code, b := rawChunked(t, e, path)
		if code != http.StatusBadRequest || !strings.Contains(string(b), gateway.CodeInvalidRequest) {
			t.Errorf("POST %s with a malformed chunked body: %d %s, want 400 %s", path, code, b, gateway.CodeInvalidRequest)
		}
	}
	if got := metricSum(e, "herald_redis_errors_total"); got != 0 {
		t.Errorf("herald_redis_errors_total %v after body read errors, want 0", got)
	}
	big := []byte(`{"partitions": 1, "max_age": "` + strings.Repeat("1", 200) + `s"}`)
	e.publish("bodyerr", "x", nil)
	for _, c := range []struct{ method, path string }{
		{"PUT", "/v1/topics/bodyerr"},
		{"POST", "/v1/topics/bodyerr/groups/g/ack"},
		{"POST", "/v1/topics/bodyerr/deadletters/redrive"},
		{"POST", "/v1/topics/bodyerr/events"},
		{"POST", "/v1/channels/bodyerr/messages"},
	} {
		code, b := e.do(c.method, c.path, big, map[string]string{"Content-Type": "application/json"})
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), gateway.CodePayloadTooLarge) {
			t.Errorf("%s %s with a body over max_body_bytes: %d %s, want 413 %s", c.method, c.path, code, b, gateway.CodePayloadTooLarge)
		}
	}
}

// rawChunked POSTs a body with a malformed chunk size and returns the answer.
func rawChunked(t *testing.T, e *env, path string) (int, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(e.url, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5\r\nhello\r\nzz\r\nbroken\r\n0\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

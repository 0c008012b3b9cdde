package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestEncodeCloudEventTypedExtensions: integer and boolean extensions come
// back as JSON numbers and booleans; other numbers and strings as strings.
func TestEncodeCloudEventTypedExtensions(t *testing.T) {
	t.Parallel()
	ev, err := gateway.DecodeCloudEvent([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t",` +
		`"count":7,"flag":false,"ratio":1.5,"big":9999999999,"note":"7","data":{"a":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(gateway.EncodeCloudEvent(&ev), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"count": float64(7), "flag": false, "ratio": "1.5", "big": "9999999999", "note": "7"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %#v (%T), want %#v (%T)", k, m[k], m[k], v, v)
		}
	}
	for k := range m {
		if strings.Contains(k, "-") {
			t.Errorf("attribute %q is not a CloudEvents name", k)
		}
	}
}

type hookRecorder struct {
	mu   sync.Mutex
	reqs []recordedPost
}

type recordedPost struct {
	header http.Header
	body   []byte
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.reqs = append(h.reqs, recordedPost{r.Header.Clone(), b})
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookRecorder) wait(t *testing.T, n int) []recordedPost {
	t.Helper()
	redistest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d webhook posts", n), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.reqs) >= n
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]recordedPost(nil), h.reqs...)
	// Keyless events are POSTed concurrently: the typed one (e-1) first.
	slices.SortStableFunc(out, func(a, b recordedPost) int {
		return strings.Compare(a.header.Get("Herald-Position"), b.header.Get("Herald-Position"))
	})
	return out
}

// TestCloudEventsRoundTrip: a structured CloudEvent with an integer and a
// boolean extension, and an event appended without an id by another
// producer (XADD), read back over SSE, a WebSocket group subscription
// (acknowledged by its heraldposition), structured and binary webhooks and
// the admin listing: extensions keep their JSON types, the id-less event
// has the stable id <topic>/<partition>/<stream id> everywhere.
func TestCloudEventsRoundTrip(t *testing.T) {
	t.Parallel()
	structured, binary := &hookRecorder{}, &hookRecorder{}
	ss, bs := httptest.NewServer(structured), httptest.NewServer(binary)
	defer ss.Close()
	defer bs.Close()
	const topic = "cet"
	e := newEnv(t, gateway.Config{Webhooks: []gateway.Webhook{
		{Name: "ce-s", Topic: topic, URL: ss.URL, From: "beginning"},
		{Name: "ce-b", Topic: topic, URL: bs.URL, From: "beginning", Format: gateway.WebhookFormatBinary},
	}})
	code, b := e.do("POST", "/v1/topics/"+topic+"/events", []byte(`{"specversion":"1.0","id":"e-1","source":"/shop","type":"order.placed",`+
		`"count":7,"flag":true,"note":"x","data":{"a":1}}`), map[string]string{"Content-Type": "application/cloudevents+json"})
	if code != 200 {
		t.Fatalf("publish: %d %s", code, b)
	}

	// Another producer appends straight into the partition stream.
	_, b = e.do("GET", "/v1/topics/"+topic, nil, nil)
	var info struct {
		PartitionInfo []struct{ Stream string } `json:"partition_info"`
	}
	if err := json.Unmarshal(b, &info); err != nil || len(info.PartitionInfo) == 0 {
		t.Fatalf("topic info %s: %v", b, err)
	}
	sid, err := redisproc.Command(redistest.Shared(t).Addr(), 5*time.Second, "XADD", info.PartitionInfo[0].Stream, "*", "d", `{"raw":1}`)
	if err != nil {
		t.Fatal(err)
	}
	rawID := topic + "/0/" + sid

	checkTyped := func(where string, m map[string]any) {
		t.Helper()
		if m["id"] != "e-1" || m["count"] != float64(7) || m["flag"] != true || m["note"] != "x" {
			t.Errorf("%s: %v (count %T, flag %T): want id e-1, count 7 (number), flag true (boolean), note x", where, m, m["count"], m["flag"])
		}
		if p, _ := m["heraldposition"].(string); !strings.HasPrefix(p, "0/") {
			t.Errorf("%s: heraldposition %v", where, m["heraldposition"])
		}
	}
	checkRaw := func(where string, m map[string]any) {
		t.Helper()
		if m["id"] != rawID || m["heraldposition"] != "0/"+sid {
			t.Errorf("%s: id %v, heraldposition %v; want %s", where, m["id"], m["heraldposition"], rawID)
		}
	}
	decode := func(b []byte) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return m
	}

	// SSE live tail.
	s := e.openSSE("/v1/topics/"+topic+"/events?from=beginning&format=cloudevents", nil)
	checkTyped("sse", decode(s.next(t, "", 5*time.Second).Data))
	checkRaw("sse", decode(s.next(t, "", 5*time.Second).Data))

	// WebSocket group subscription: attempt and position, acknowledged by position.
	w := e.dialWS(t, "")
	w.send(gateway.WSRequest{Op: "subscribe", ID: "s1", Topic: topic, Group: "ws-ce", From: "beginning", Format: "cloudevents"})
	w.expect("subscribed")
	for i := 0; i < 2; i++ { // keyless events: in either order
		m := decode(w.expect("event").Event)
		if m["id"] == "e-1" {
			checkTyped("ws", m)
		} else {
			checkRaw("ws", m)
		}
		if m["heraldattempt"] != float64(1) || m["heraldgroup"] != "ws-ce" {
			t.Errorf("ws event %d: heraldattempt %#v heraldgroup %v", i, m["heraldattempt"], m["heraldgroup"])
		}
		w.send(gateway.WSRequest{Op: "ack", ID: "s1", Positions: []string{m["heraldposition"].(string)}})
	}
	waitPending(t, e, topic, "ws-ce", 0)
	w.send(gateway.WSRequest{Op: "subscribe", ID: "s2", Topic: topic, Format: "xml"})
	if m, ok := w.recv(5 * time.Second); !ok || m.Type != "error" || m.ID != "s2" || !strings.Contains(m.Error.Message, "format") {
		t.Errorf("format xml: %+v", m)
	}

	// Structured webhook.
	posts := structured.wait(t, 2)
	checkTyped("webhook", decode(posts[0].body))
	checkRaw("webhook", decode(posts[1].body))
	if got := posts[1].header.Get("Herald-Event-Id"); got != rawID {
		t.Errorf("Herald-Event-Id %q, want %q", got, rawID)
	}

	// Binary webhook: ce-* headers, the payload as the body.
	posts = binary.wait(t, 2)
	h := posts[0].header
	if h.Get("Ce-Id") != "e-1" || h.Get("Ce-Specversion") != "1.0" || h.Get("Ce-Type") != "order.placed" || h.Get("Ce-Count") != "7" ||
		h.Get("Ce-Flag") != "true" || h.Get("Ce-Heraldattempt") != "1" || h.Get("Content-Type") != "application/json" ||
		string(posts[0].body) != `{"a":1}` {
		t.Errorf("binary webhook: %v %s", h, posts[0].body)
	}
	if got := posts[1].header.Get("Ce-Id"); got != rawID || string(posts[1].body) != `{"raw":1}` {
		t.Errorf("binary webhook of the id-less event: ce-id %q body %s", got, posts[1].body)
	}

	// Admin listing (Herald envelope).
	_, b = e.do("GET", "/v1/topics/"+topic+"/events", nil, map[string]string{"Accept": "application/json"})
	var list struct{ Events []gateway.EventJSON }
	if err := json.Unmarshal(b, &list); err != nil || len(list.Events) != 2 {
		t.Fatalf("listing %s: %v", b, err)
	}
	if list.Events[1].ID != rawID {
		t.Errorf("listing: id %q, want %q", list.Events[1].ID, rawID)
	}
}

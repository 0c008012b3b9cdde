package gateway_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
)

func TestDelayedPublishOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	body := `[{"id":"later-1","data":{"n":1},"deliver_at":"` + at.Format(time.RFC3339Nano) + `"},{"data":{"n":2}},{"id":"later-2","data":"x","delay":"2h"}]`
	code, b := e.do("POST", "/v1/topics/tm/events", []byte(body), map[string]string{"Content-Type": "application/json"})
	if code != 200 {
		t.Fatalf("publish: %d %s", code, b)
	}
	var pr gateway.TimedPublishResponse
	if err := json.Unmarshal(b, &pr); err != nil || len(pr.Positions) != 3 {
		t.Fatalf("answer %s: %v", b, err)
	}
	if p := pr.Positions[0]; p.StreamID != "" || p.EventID != "later-1" || p.DeliverAt == nil || !p.DeliverAt.Equal(at) {
		t.Fatalf("delayed event answered %+v, want no stream id, its id and deliver_at %v", p, at)
	}
	if p := pr.Positions[1]; p.StreamID == "" || p.DeliverAt != nil {
		t.Fatalf("the event without a delivery time: %+v, want a stream position", p)
	}
	// A CloudEvent with the deliverdelay extension.
	ce := `{"specversion":"1.0","id":"ce-1","source":"/t","type":"t.x","deliverdelay":"90m","data":{"a":1}}`
	if code, b := e.do("POST", "/v1/topics/tm/events", []byte(ce), map[string]string{"Content-Type": "application/cloudevents+json"}); code != 200 || !strings.Contains(string(b), `"deliver_at"`) {
		t.Fatalf("CloudEvent with deliverdelay: %d %s", code, b)
	}
	code, b = e.do("GET", "/v1/topics/tm/scheduled", nil, nil)
	var list struct {
		Total  int64                        `json:"total"`
		Events []gateway.ScheduledEventJSON `json:"events"`
	}
	if code != 200 || json.Unmarshal(b, &list) != nil || list.Total != 3 || list.Events[0].ID != "later-1" || list.Events[0].Headers["deliverat"] != "" {
		t.Fatalf("scheduled list: %d %s", code, b)
	}
	if code, b := e.do("DELETE", "/v1/topics/tm/scheduled/later-1", nil, nil); code != 200 || !strings.Contains(string(b), `"cancelled":true`) {
		t.Fatalf("cancel: %d %s", code, b)
	}
	if code, b := e.do("DELETE", "/v1/topics/tm/scheduled/later-1", nil, nil); code != 200 || !strings.Contains(string(b), `"cancelled":false`) {
		t.Fatalf("second cancel: %d %s", code, b)
	}
	for _, bad := range []string{`{"data":1,"delay":"soon"}`, `{"data":1,"deliver_at":"tomorrow"}`, `{"data":1,"delay":"-5s"}`, `{"data":1,"delay":"1s","deliver_at":"2030-01-01T00:00:00Z"}`} {
		if code, b := e.do("POST", "/v1/topics/tm/events", []byte(bad), map[string]string{"Content-Type": "application/json"}); code != 400 || !strings.Contains(string(b), "invalid_request") {
			t.Errorf("%s: %d %s, want 400", bad, code, b)
		}
	}
	if code, b := e.do("POST", "/v1/topics/tm/events?delay=bad", []byte("x"), nil); code != 400 {
		t.Errorf("?delay=bad: %d %s, want 400", code, b)
	}
}

func TestSeekAndLossesOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	e.publish("ts", "one", nil)
	if code, b := e.do("POST", "/v1/topics/ts/groups/nosuch/seek", []byte(`{"to":"end"}`), nil); code != 404 || !strings.Contains(string(b), "group_not_found") {
		t.Fatalf("seek of a missing group: %d %s", code, b)
	}
	if err := e.c.CreateGroup(t.Context(), "ts", "g", herald.ToBeginning()); err != nil {
		t.Fatal(err)
	}
	code, b := e.do("POST", "/v1/topics/ts/groups/g/seek", []byte(`{"to":"end"}`), nil)
	if code != 200 || !strings.Contains(string(b), `"to":"end"`) {
		t.Fatalf("seek: %d %s", code, b)
	}
	if code, b := e.do("POST", "/v1/topics/ts/groups/g/seek", []byte(`{"to":"someday"}`), nil); code != 400 {
		t.Fatalf("bad target: %d %s", code, b)
	}
	code, b = e.do("GET", "/v1/topics/ts/losses", nil, nil)
	if code != 200 || !strings.Contains(string(b), `"group":"g"`) {
		t.Fatalf("losses: %d %s", code, b)
	}
}

func TestCreateTopicWithTrimAcked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	if code, b := e.do("PUT", "/v1/topics/tr", []byte(`{"partitions":2,"trim_acked":true}`), map[string]string{"Content-Type": "application/json"}); code != 200 && code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	code, b := e.do("GET", "/v1/topics/tr", nil, nil)
	if code != 200 || !strings.Contains(string(b), `"trim_acked":true`) {
		t.Fatalf("topic info: %d %s", code, b)
	}
}

func TestTimeMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	e.publish("tmx", "x", nil)
	if err := e.c.CreateGroup(t.Context(), "tmx", "g", herald.ToBeginning()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Publish(t.Context(), "tmx", herald.Event{Data: []byte("later")}, herald.Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	code, b := e.do("GET", "/metrics", nil, nil)
	for _, want := range []string{`herald_topic_scheduled{topic="tmx"} 1`, `herald_group_trimmed_unread{group="g",topic="tmx"} 0`, `herald_group_dead_letters{group="g",topic="tmx"} 0`} {
		if code != 200 || !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s (status %d)", want, code)
		}
	}
}

// TestDelayTooLarge: a delay of more milliseconds than a duration holds
// is reported as too large (it overflowed and was reported as negative).
func TestDelayTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	for _, c := range []struct{ path, body, ct string }{
		{"/v1/topics/tl/events?delay=9223372036854775807", "x", ""},
		{"/v1/topics/tl/events?delay=9223372036854775808", "x", ""},
		{"/v1/topics/tl/events", `{"data":1,"delay":9223372036854775807}`, "application/json"},
		{"/v1/topics/tl/events", `{"data":1,"delay":"1e+30"}`, "application/json"},
	} {
		code, b := e.do("POST", c.path, []byte(c.body), map[string]string{"Content-Type": c.ct})
		if code != 400 || !strings.Contains(string(b), "too large") || strings.Contains(string(b), "negative") {
			t.Errorf("%s %s: %d %s, want 400 too large", c.path, c.body, code, b)
		}
	}
	if code, b := e.do("POST", "/v1/topics/tl/events?delay=-9223372036854775807", []byte("x"), nil); code != 400 || !strings.Contains(string(b), "negative") {
		t.Errorf("a negative delay: %d %s, want 400 negative", code, b)
	}
	if code, b := e.do("POST", "/v1/topics/tl/events?delay=60000", []byte("x"), nil); code != 200 || !strings.Contains(string(b), `"deliver_at"`) {
		t.Errorf("delay=60000 (a minute): %d %s", code, b)
	}
}

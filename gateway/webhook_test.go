package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestWebhookTargetDownThenUp: the target fails for a while (it drops the
// connection without an answer for even events, answers 503 for odd ones),
// then answers; every event is delivered, signed, with its trace context.
// The target keeps its listener throughout: a port closed and listened on
// again could be taken meanwhile by another test.
func TestWebhookTargetDownThenUp(t *testing.T) {
	t.Parallel()
	const secret = "s3cret"
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	failed := map[int]bool{} // events failed while down
	got := map[int]bool{}    // events answered 204
	var problems []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ce struct{ Data struct{ N int } }
		_ = json.Unmarshal(body, &ce)
		mu.Lock()
		if err := gateway.VerifySignature(secret, r.Header.Get(gateway.SignatureHeader), body, time.Minute); err != nil {
			problems = append(problems, err.Error())
		}
		if r.Header.Get("traceparent") == "" || r.Header.Get("Content-Type") != "application/cloudevents+json" {
			problems = append(problems, "missing traceparent or content type")
		}
		if down.Load() {
			failed[ce.Data.N] = true
			mu.Unlock()
			if ce.Data.N%2 == 0 { // a network error: the connection ends with no answer
				if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		got[ce.Data.N] = true
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	e := newEnv(t, gateway.Config{Webhooks: []gateway.Webhook{{Name: "orders-hook", Topic: "wh", URL: "http://" + l.Addr().String() + "/hook",
		Secret: secret, Backoff: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, MaxAttempts: 100}}})
	const n = 20
	for i := 0; i < n; i++ {
		e.publish("wh", fmt.Sprintf(`{"data":{"n":%d}}`, i), map[string]string{"Content-Type": "application/json",
			"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	}
	// Every event fails at least once while the target is down.
	redistest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d failed webhook deliveries", n), func() bool {
		mu.Lock()
		all := len(failed) == n
		mu.Unlock()
		return all && metricSum(e, "herald_deliveries_total", `outcome="error"`, `via="webhook"`) >= n
	})
	down.Store(false) // up
	redistest.WaitFor(t, 15*time.Second, fmt.Sprintf("all %d delivered", n), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	})
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems[0])
	}
	waitPending(t, e, "wh", "webhook-orders-hook", 0)
}

// TestWebhookPermanentRejection: a target answering 400 dead-letters the events at once.
func TestWebhookPermanentRejection(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := 0
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		http.Error(w, "bad event", http.StatusBadRequest)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	e := newEnv(t, gateway.Config{Webhooks: []gateway.Webhook{{Name: "bad", Topic: "wh400", URL: "http://user:pw@" + l.Addr().String() + "/x?token=secret",
		Backoff: 20 * time.Millisecond}}})
	for i := 0; i < 3; i++ {
		e.publish("wh400", fmt.Sprint(i), nil)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, b := e.do("GET", "/v1/topics/wh400/deadletters?group=webhook-bad", nil, nil)
		var r struct {
			DeadLetters []gateway.DeadLetterJSON `json:"dead_letters"`
		}
		_ = json.Unmarshal(b, &r)
		if len(r.DeadLetters) == 3 {
			for _, d := range r.DeadLetters {
				if !strings.Contains(d.Error, "400") || d.Attempts != 1 {
					t.Fatalf("dead letter %+v: want the 400 answer after one attempt", d)
				}
				if strings.Contains(d.Error, "secret") || strings.Contains(d.Error, "pw") {
					t.Fatalf("dead letter error leaks URL credentials: %s", d.Error)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 3 {
		t.Fatalf("target called %d times, want 3 (no retries of a 400)", calls)
	}
}

// TestWebhookEventIDWithControlBytes: an event id holding CR and LF (which
// a header value may not) is percent-encoded in Herald-Event-Id, as ce-id
// is in binary mode; the POST goes out and is acknowledged, where it used
// to fail every time and end dead-lettered.
func TestWebhookEventIDWithControlBytes(t *testing.T) {
	t.Parallel()
	ids := make(chan string, 10)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids <- r.Header.Get("Herald-Event-Id")
		w.WriteHeader(http.StatusNoContent)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	e := newEnv(t, gateway.Config{Webhooks: []gateway.Webhook{{Name: "crlf", Topic: "whcrlf", URL: "http://" + l.Addr().String() + "/hook",
		Backoff: 20 * time.Millisecond, MaxAttempts: 2}}})
	e.publish("whcrlf", `{"id":"evil\r\nX-Injected: 1 %\"","data":1}`, map[string]string{"Content-Type": "application/json"})
	select {
	case id := <-ids:
		if want := `evil%0D%0AX-Injected:%201%20%25%22`; id != want {
			t.Fatalf("Herald-Event-Id %q, want %q", id, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook was not called: the POST with the event id failed")
	}
	waitPending(t, e, "whcrlf", "webhook-crlf", 0)
	if _, b := e.do("GET", "/v1/topics/whcrlf/deadletters?group=webhook-crlf", nil, nil); strings.Contains(string(b), "evil") {
		t.Fatalf("the event was dead-lettered: %s", b)
	}
}

package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

type env struct {
	t   *testing.T
	c   *herald.Client
	g   *gateway.Gateway
	srv *httptest.Server
	url string
}

// newEnv starts a gateway on a loopback test server over the shared
// redis-server, with a namespace of the test's own.
func newEnv(t *testing.T, cfg gateway.Config) *env {
	t.Helper()
	c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return newEnvClient(t, c, cfg)
}

// newEnvClient starts a gateway over c (which the caller closes) on a
// loopback test server.
func newEnvClient(t *testing.T, c *herald.Client, cfg gateway.Config) *env {
	t.Helper()
	cfg.Client = c
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
		srv.Close()
	})
	return &env{t: t, c: c, g: g, srv: srv, url: srv.URL}
}

// do sends a request and returns the status and body.
func (e *env) do(method, path string, body []byte, hdr map[string]string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *env) publish(topic string, body string, hdr map[string]string) gateway.PublishResponse {
	e.t.Helper()
	code, b := e.do("POST", "/v1/topics/"+topic+"/events", []byte(body), hdr)
	if code != 200 {
		e.t.Fatalf("publish: %d %s", code, b)
	}
	var pr gateway.PublishResponse
	if err := json.Unmarshal(b, &pr); err != nil {
		e.t.Fatal(err)
	}
	return pr
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	ID, Event string
	Data      []byte
}

// sseClient reads an SSE stream.
type sseClient struct {
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
	events chan sseEvent
}

func (e *env) openSSE(path string, hdr map[string]string) *sseClient {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		e.t.Fatalf("SSE %s: %d %s", path, resp.StatusCode, b)
	}
	s := &sseClient{resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel, events: make(chan sseEvent, 10000)}
	go s.read()
	e.t.Cleanup(s.close)
	return s
}

func (s *sseClient) read() {
	defer close(s.events)
	var cur sseEvent
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if cur.Data != nil {
				s.events <- cur
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.Data = []byte(line[6:])
		}
	}
}

func (s *sseClient) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event of the given name ("" for data events), failing after timeout.
func (s *sseClient) next(t *testing.T, name string, timeout time.Duration) sseEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("stream ended while waiting for a %q event", name)
			}
			if ev.Event == name {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %q event within %s", name, timeout)
		}
	}
}

func decodeEvent(t *testing.T, b []byte) gateway.EventJSON {
	t.Helper()
	var e gateway.EventJSON
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("event %s: %v", b, err)
	}
	return e
}

// metricSum adds the values of a metric's series whose labels contain every one of labels.
func metricSum(e *env, name string, labels ...string) float64 {
	_, b := e.do("GET", "/metrics", nil, nil)
	sum := 0.0
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		ok := true
		for _, lb := range labels {
			ok = ok && strings.Contains(l, lb)
		}
		if i := strings.LastIndexByte(l, ' '); ok && i > 0 {
			var v float64
			_, _ = fmt.Sscan(l[i+1:], &v)
			sum += v
		}
	}
	return sum
}

// streamStatus opens a stream and returns its status: for 200 it closes
// the stream as soon as the headers arrive (no body); otherwise it returns
// the error body too.
func (e *env) streamStatus(path string, hdr map[string]string) (int, []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, nil
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

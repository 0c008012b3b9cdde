package gateway_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldbus/herald/gateway"
)

type wsClient struct {
	t    *testing.T
	c    *websocket.Conn
	msgs chan gateway.WSMessage
}

func (e *env) dialWS(t *testing.T, query string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.url, "http")+"/v1/ws"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(websocket.StatusNormalClosure, "") })
	w := &wsClient{t: t, c: c, msgs: make(chan gateway.WSMessage, 1000)}
	go func() { // a Read whose context ends closes the connection: one reader, no deadline
		defer close(w.msgs)
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			var m gateway.WSMessage
			_ = json.Unmarshal(b, &m)
			w.msgs <- m
		}
	}()
	return w
}

func (w *wsClient) send(v any) {
	w.t.Helper()
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatal(err)
	}
}

// recv returns the next message, or ok=false after timeout.
func (w *wsClient) recv(timeout time.Duration) (gateway.WSMessage, bool) {
	select {
	case m, ok := <-w.msgs:
		return m, ok
	case <-time.After(timeout):
		return gateway.WSMessage{}, false
	}
}

func (w *wsClient) expect(typ string) gateway.WSMessage {
	w.t.Helper()
	for {
		m, ok := w.recv(5 * time.Second)
		if !ok {
			w.t.Fatalf("no %q message", typ)
		}
		if m.Type == "error" {
			w.t.Fatalf("error: %+v", m.Error)
		}
		if m.Type == typ {
			return m
		}
	}
}

// TestWebSocketWindowAndAck: a connection with window=2 gets two events,
// nothing more until it acknowledges; publish and channels work on the same socket.
func TestWebSocketWindowAndAck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, gateway.Config{})
	w := e.dialWS(t, "?window=2")
	w.send(gateway.WSRequest{Op: "subscribe", ID: "s1", Topic: "wst", Group: "g", From: "beginning"})
	w.expect("subscribed")
	events := []json.RawMessage{}
	for i := 0; i < 5; i++ {
		events = append(events, json.RawMessage(`{"data":`+string(rune('0'+i))+`}`))
	}
	w.send(gateway.WSRequest{Op: "publish", ID: "p1", Topic: "wst", Events: events})
	got := []gateway.EventJSON{}
	for len(got) < 2 {
		m, ok := w.recv(5 * time.Second)
		if !ok {
			t.Fatal("no event")
		}
		if m.Type == "event" {
			var ev gateway.EventJSON
			_ = json.Unmarshal(m.Event, &ev)
			got = append(got, ev)
		}
	}
	for {
		m, ok := w.recv(300 * time.Millisecond)
		if !ok {
			break
		}
		if m.Type == "event" {
			t.Fatalf("a third event arrived with a window of 2: %s", m.Event)
		}
	}
	w.send(gateway.WSRequest{Op: "ack", ID: "s1", Positions: []string{got[0].Position, got[1].Position}})
	for len(got) < 5 {
		m := w.expect("event")
		var ev gateway.EventJSON
		_ = json.Unmarshal(m.Event, &ev)
		got = append(got, ev)
		w.send(gateway.WSRequest{Op: "ack", ID: "s1", Positions: []string{ev.Position}})
	}
	waitPending(t, e, "wst", "g", 0)

	ch := strings.ReplaceAll(t.Name(), "/", "_") + ".room"
	w.send(gateway.WSRequest{Op: "subscribe", ID: "c1", Channel: ch})
	w.expect("subscribed")
	w.send(gateway.WSRequest{Op: "publish", ID: "p2", Channel: ch, Data: json.RawMessage(`"hello"`)})
	m := w.expect("message")
	if m.Message.Channel != ch || string(m.Message.Data) != `"hello"` {
		t.Fatalf("channel message %+v", m.Message)
	}
}

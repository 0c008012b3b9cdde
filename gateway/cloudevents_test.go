package gateway_test

import (
	"bytes"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
)

func TestDecodeCloudEvent(t *testing.T) {
	t.Parallel()
	ev, err := gateway.DecodeCloudEvent([]byte(`{"specversion":"1.0","id":"e1","source":"/shop","type":"order.created",
		"subject":"o-1","time":"2024-05-01T12:00:00Z","partitionkey":"cust-7","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"priority":3,"data":{"total":42}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := herald.Event{ID: "e1", Source: "/shop", Type: "order.created", Subject: "o-1", Key: "cust-7",
		Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), ContentType: "application/json", Data: []byte(`{"total":42}`),
		Headers: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "priority": "3",
			"herald-cetypes": "priority=integer"}} // the extension was a JSON integer
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("got %+v\nwant %+v", ev, want)
	}
	for _, bad := range []string{`{}`, `[]`, `null`, `{"specversion":"0.3","id":"a","source":"s","type":"t"}`,
		`{"specversion":"1.0","id":"a","source":"s"}`, `{"specversion":"1.0","id":"a","source":"s","type":"t","Bad-Name":1}`,
		`{"specversion":"1.0","id":"a","source":"s","type":"t","data":1,"data_base64":"AA=="}`,
		`{"specversion":"1.0","id":"a","source":"s","type":"t","datacontenttype":"text/plain","data":{"x":1}}`} {
		if _, err := gateway.DecodeCloudEvent([]byte(bad)); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

func TestDecodeBinary(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", "b1")
	h.Set("ce-source", "/x")
	h.Set("ce-type", "t")
	h.Set("ce-partitionkey", "k")
	h.Set("ce-comment", "caf%C3%A9")
	h.Set("Content-Type", "text/plain")
	ev, err := gateway.DecodeBinary(h, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "b1" || ev.Key != "k" || ev.Headers["comment"] != "café" || string(ev.Data) != "hi" || ev.ContentType != "text/plain" {
		t.Fatalf("got %+v", ev)
	}
	h.Del("ce-type")
	if _, err := gateway.DecodeBinary(h, nil); err == nil {
		t.Fatal("missing ce-type: want an error")
	}
}

// roundTrip checks that an event decoded from input survives encoding and
// decoding again.
func roundTrip(t *testing.T, ev herald.Event) {
	t.Helper()
	again, err := gateway.DecodeCloudEvent(gateway.EncodeCloudEvent(&ev))
	if err != nil {
		t.Fatalf("re-decoding %+v: %v", ev, err)
	}
	if !bytes.Equal(again.Data, ev.Data) || again.ID != ev.ID || again.Key != ev.Key || !again.Time.Equal(ev.Time) {
		t.Fatalf("round trip changed the event:\n%+v\n%+v", ev, again)
	}
}

func FuzzDecodeCloudEvent(f *testing.F) {
	for _, s := range []string{
		`{"specversion":"1.0","id":"e1","source":"/s","type":"t","data":{"a":[1,2]}}`,
		`{"specversion":"1.0","id":"e1","source":"/s","type":"t","datacontenttype":"text/plain","data":"hi"}`,
		`{"specversion":"1.0","id":"e1","source":"/s","type":"t","data_base64":"AAEC/w=="}`,
		`{"specversion":"1.0","id":"e1","source":"/s","type":"t","time":"2024-01-01T00:00:00.5+02:00","ext1":true}`,
		`{"specversion":"1.0"}`, `[`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := gateway.DecodeCloudEvent(b)
		if err != nil {
			return
		}
		if ev.ID == "" || ev.Source == "" || ev.Type == "" {
			t.Fatalf("decoded without required attributes: %+v", ev)
		}
		roundTrip(t, ev)
	})
}

func FuzzDecodeCloudEventBatch(f *testing.F) {
	f.Add([]byte(`[{"specversion":"1.0","id":"a","source":"s","type":"t","data":1},{"specversion":"1.0","id":"b","source":"s","type":"t"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[null]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := gateway.DecodeCloudEventBatch(b)
		if err != nil {
			return
		}
		for _, ev := range evs {
			roundTrip(t, ev)
		}
	})
}

func FuzzDecodeBinary(f *testing.F) {
	f.Add("1.0", "id-1", "/src", "type.a", "2024-01-01T00:00:00Z", "ext", "v%20x", "application/json", []byte(`{"a":1}`))
	f.Add("1.0", "i", "s", "t", "", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "", []byte{0xff, 0})
	f.Fuzz(func(t *testing.T, sv, id, src, typ, tm, ext, extVal, ct string, body []byte) {
		h := http.Header{}
		h.Set("ce-specversion", sv)
		h.Set("ce-id", id)
		h.Set("ce-source", src)
		h.Set("ce-type", typ)
		if tm != "" {
			h.Set("ce-time", tm)
		}
		if ext != "" {
			h.Set("ce-"+ext, extVal)
		}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		ev, err := gateway.DecodeBinary(h, body)
		if err != nil {
			return
		}
		if !bytes.Equal(ev.Data, body) {
			t.Fatal("binary mode changed the body")
		}
	})
}

func FuzzDecodeEnvelopes(f *testing.F) {
	f.Add([]byte(`{"data":{"a":1},"type":"t","key":"k"}`))
	f.Add([]byte(`[{"data":"x","content_type":"text/plain"},{"data_base64":"AA=="}]`))
	f.Add([]byte(`{"order":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := gateway.DecodeEnvelopes(b)
		if err != nil {
			return
		}
		if len(evs) == 0 && len(bytes.TrimSpace(b)) > 0 && bytes.TrimSpace(b)[0] != '[' {
			t.Fatal("an object decoded to no event")
		}
	})
}

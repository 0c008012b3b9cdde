package codec

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	ev := Event{ID: "id-1", Type: "article.updated", Key: "a-7", Source: "blog", Subject: "s",
		Time: time.UnixMicro(1700000000123456).UTC(), ContentType: "application/json",
		Headers: map[string]string{"traceparent": "00-abc", "x": ""}, Data: []byte(`{"a":1}`)}
	got, _, err := Decode(Append(nil, &ev), "1-0")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != ev.ID || got.Type != ev.Type || got.Key != ev.Key || got.Source != ev.Source ||
		got.Subject != ev.Subject || !got.Time.Equal(ev.Time) || got.ContentType != ev.ContentType ||
		!bytes.Equal(got.Data, ev.Data) || len(got.Headers) != 2 || got.Headers["traceparent"] != "00-abc" {
		t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", got, ev)
	}
}

func TestTimeFromPosition(t *testing.T) {
	got, _, err := Decode([]string{"d", "x"}, "1700000000123-4")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.UnixMilli(1700000000123).UTC(); !got.Time.Equal(want) {
		t.Fatalf("time = %v, want %v", got.Time, want)
	}
}

func TestMalformed(t *testing.T) {
	for _, pairs := range [][]string{{"d"}, {"tm", "yesterday"}, {"a", "-1"}} {
		if _, _, err := Decode(pairs, "1-0"); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%q) error = %v, want ErrMalformed", pairs, err)
		}
	}
	if _, _, err := Decode([]string{"d", "x"}, "nope"); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad position accepted: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("i", "id", "d", "data", "1-0")
	f.Add("tm", "123", "h.x", "y", "5-5")
	f.Add("a", "3", "x.time", "zz", "")
	f.Fuzz(func(t *testing.T, f1, v1, f2, v2, pos string) {
		ev, m, err := Decode([]string{f1, v1, f2, v2}, pos)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		// Whatever decodes must survive a round trip unchanged.
		again, _, err := Decode(Append(nil, &ev), pos)
		if err != nil {
			t.Fatalf("re-decode failed: %v", err)
		}
		if again.ID != ev.ID || again.Type != ev.Type || !bytes.Equal(again.Data, ev.Data) ||
			len(again.Headers) != len(ev.Headers) || !again.Time.Equal(ev.Time.Truncate(time.Microsecond)) {
			t.Fatalf("round trip changed the event: %+v -> %+v", ev, again)
		}
		_ = m
	})
}

func TestFieldCount(t *testing.T) {
	for _, ev := range []Event{{}, {ID: "x", Data: []byte("d")}, {Type: "t", Key: "k", Source: "s", Subject: "u", ContentType: "c",
		Time: time.Unix(1, 0), Headers: map[string]string{"a": "1", "b": "2"}}} {
		if got, want := FieldCount(&ev), len(Append(nil, &ev)); got != want {
			t.Errorf("FieldCount = %d, Append wrote %d for %+v", got, want, ev)
		}
	}
}

package route_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
	"github.com/heraldbus/herald/route"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

const articleRules = `
rules:
  - name: tech
    when: data.category == "tech"
    to: [articles.tech]
  - name: sports
    when: data.category == "sports"
    to: [articles.sports]
  - name: audit
    when: type.startsWith("article.")
    to: [audit, "channel:live.articles"]
default: [unrouted]
`

func article(category string) herald.Event {
	return herald.Event{Type: "article.published", ContentType: "application/json",
		Data: []byte(`{"id": 7, "category": "` + category + `"}`)}
}

func TestArticlesRoutedByCategory(t *testing.T) {
	r, err := route.Parse([]byte(articleRules))
	if err != nil {
		t.Fatal(err)
	}
	c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cases := []struct {
		ev   herald.Event
		want []string
	}{
		{article("tech"), []string{"articles.tech", "audit", "channel:live.articles"}},
		{article("sports"), []string{"articles.sports", "audit", "channel:live.articles"}},
		{herald.Event{Type: "comment.created", Data: []byte("hi")}, []string{"unrouted"}},
	}
	for _, tc := range cases {
		res, ds, err := r.Publish(ctx, c, tc.ev)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range ds {
			got = append(got, d.Destination.String())
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Fatalf("%s routed to %v, want %v (matched %v)", tc.ev.Data, got, tc.want, res.Matched)
		}
	}
	// And the events are really there.
	for topic, n := range map[string]int64{"articles.tech": 1, "articles.sports": 1, "audit": 2, "unrouted": 1} {
		ti, err := c.TopicInfo(ctx, topic)
		if err != nil || ti.Length != n {
			t.Fatalf("topic %s holds %d events (%v), want %d", topic, ti.Length, err, n)
		}
	}
}

func TestStopEndsEvaluation(t *testing.T) {
	r, err := route.New(route.Config{Rules: []route.Rule{
		{Name: "vip", When: `headers["tier"] == "vip"`, To: []string{"vip"}, Stop: true},
		{Name: "all", To: []string{"everything"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := r.Route(&herald.Event{Headers: map[string]string{"tier": "vip"}})
	if len(res.Destinations) != 1 || res.Destinations[0].Name != "vip" {
		t.Fatalf("vip: %+v", res)
	}
	res = r.Route(&herald.Event{})
	if len(res.Destinations) != 1 || res.Destinations[0].Name != "everything" {
		t.Fatalf("plain: %+v", res)
	}
}

func TestMissingFieldIsFalseNotACrash(t *testing.T) {
	r, err := route.New(route.Config{Rules: []route.Rule{
		{Name: "cat", When: `data.category == "tech"`, To: []string{"tech"}},
		{Name: "hdr", When: `headers["x-region"] == "eu"`, To: []string{"eu"}},
		{Name: "num", When: `data.price > 10`, To: []string{"pricey"}},
	}, Default: []string{"rest"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []herald.Event{
		{Data: []byte(`{"title":"no category"}`)},
		{Data: []byte(`not json at all`)},
		{Data: []byte(`{"price":"not a number"}`)},
		{},
	} {
		res := r.Route(&ev)
		if !res.Default || len(res.Destinations) != 1 || res.Destinations[0].Name != "rest" {
			t.Fatalf("%q: %+v, want the default route", ev.Data, res)
		}
	}
}

func TestBadRuleReportsNameLineColumn(t *testing.T) {
	_, err := route.Parse([]byte(`
rules:
  - name: ok
    when: type == "a"
    to: [a]
  - name: broken
    when: type == "a" &&& key
    to: [b]
`))
	if !errors.Is(err, herald.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	msg := err.Error()
	for _, want := range []string{`rule "broken"`, "line 7", "column"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q does not contain %q", msg, want)
		}
	}
	_, err = route.New(route.Config{Rules: []route.Rule{{Name: "x", When: "type", To: []string{"a"}}}})
	if err == nil || !strings.Contains(err.Error(), "not bool") {
		t.Fatalf("non-bool condition: %v", err)
	}
	_, err = route.New(route.Config{Rules: []route.Rule{{Name: "x", When: "true", To: []string{"bad name"}}}})
	if err == nil || !strings.Contains(err.Error(), "bad name") {
		t.Fatalf("bad destination: %v", err)
	}
}

func FuzzRules(f *testing.F) {
	f.Add(`data.category == "tech"`, `{"category":"tech"}`, "article.x")
	f.Add(`headers["a"] == "b" || key.startsWith("k")`, `[]`, "")
	f.Add(`time > timestamp("2020-01-01T00:00:00Z") && size(data) > 0`, `"s"`, "t")
	f.Add(`data.a.b.c[3] / 0 == 1`, `{"a":{"b":{"c":[1,2,3,4]}}}`, "t")
	f.Fuzz(func(t *testing.T, expr, data, typ string) {
		r, err := route.New(route.Config{Rules: []route.Rule{{Name: "f", When: expr, To: []string{"t"}}}, Default: []string{"d"}})
		if err != nil {
			if !errors.Is(err, herald.ErrInvalid) {
				t.Fatalf("compile error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		res := r.Route(&herald.Event{Type: typ, Data: []byte(data), Time: time.Unix(1700000000, 0),
			Headers: map[string]string{"a": data}})
		if len(res.Destinations) != 1 {
			t.Fatalf("routed to %d destinations", len(res.Destinations))
		}
	})
}

var sink route.Result

func BenchmarkRoute10Rules(b *testing.B) {
	cfg := route.Config{Default: []string{"other"}}
	for i, cat := range []string{"tech", "sports", "politics", "science", "arts", "travel", "food", "health", "money"} {
		cfg.Rules = append(cfg.Rules, route.Rule{Name: cat, When: `data.category == "` + cat + `"`, To: []string{"articles." + cat}})
		_ = i
	}
	cfg.Rules = append(cfg.Rules, route.Rule{Name: "audit", When: `type.startsWith("article.") && headers["x-tenant"] == "acme"`, To: []string{"audit"}})
	r, err := route.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ev := herald.Event{Type: "article.published", ContentType: "application/json", Headers: map[string]string{"x-tenant": "acme"},
		Data: []byte(`{"id":7,"category":"money","title":"Redis streams","tags":["a","b"]}`)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sink = r.Route(&ev)
	}
	if len(sink.Destinations) != 2 {
		b.Fatalf("routed to %v", sink.Destinations)
	}
}

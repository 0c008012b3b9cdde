package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/heraldbus/herald/internal/redistest"
)

const rulesFile = "../../_examples/routing/rules.yaml"

func TestPublishWithRulesRoutesByCategory(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	cases := []struct {
		data, want string
	}{
		{`{"id":1,"category":"tech"}`, "articles.tech audit"},
		{`{"id":2,"category":"sports"}`, "articles.sports audit"},
	}
	for _, tc := range cases {
		r := run(t, ns, "", "-o", "json", "publish", "--rules", rulesFile, tc.data, "--type", "article.published")
		if r.code != 0 {
			t.Fatalf("%s: %+v", tc.data, r)
		}
		var out struct {
			Deliveries []struct{ Destination, Position string }
		}
		if err := json.Unmarshal([]byte(r.out), &out); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range out.Deliveries {
			if d.Position == "" {
				t.Fatalf("no position for %s", d.Destination)
			}
			got = append(got, d.Destination)
		}
		if strings.Join(got, " ") != tc.want {
			t.Fatalf("%s went to %v, want %s", tc.data, got, tc.want)
		}
	}
	if r := run(t, ns, "", "publish", "--rules", rulesFile, "plain text", "--type", "comment.created"); r.code != 0 || !strings.HasPrefix(r.out, "unrouted ") {
		t.Fatalf("unmatched event: %+v", r)
	}
	c := client(t, ns)
	for topic, n := range map[string]int64{"articles.tech": 1, "articles.sports": 1, "audit": 2, "unrouted": 1} {
		ti, err := c.TopicInfo(context.Background(), topic)
		if err != nil || ti.Length != n {
			t.Fatalf("%s holds %d (%v), want %d", topic, ti.Length, err, n)
		}
	}
}

func TestRouteTestCommand(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	r := run(t, ns, "", "route", "test", rulesFile, "../../_examples/routing/tech-article.json")
	if r.code != 0 || r.out != "matched: tech, audit\ndestinations: articles.tech, audit\n" {
		t.Fatalf("route test: %+v", r)
	}
	r = run(t, ns, `{"type":"x","headers":{"priority":"breaking"},"data":"raw"}`, "route", "test", rulesFile, "-")
	if r.code != 0 || !strings.Contains(r.out, "destinations: channel:breaking-news") {
		t.Fatalf("route test stdin: %+v", r)
	}
	// A broken rule file: exit 2, the rule's name, line and column.
	bad := t.TempDir() + "/bad.yaml"
	writeFile(t, bad, "rules:\n  - name: oops\n    when: data.category = \"tech\"\n    to: [x]\n")
	r = run(t, ns, "{}", "route", "test", bad, "-")
	if r.code != 2 || !strings.Contains(r.err, `rule "oops"`) || !strings.Contains(r.err, "line 3") || !strings.Contains(r.err, "column") {
		t.Fatalf("bad rules: %+v", r)
	}
}

func TestAppendAndReadCommands(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	if r := run(t, ns, "", "append", "order-1", `{"status":"new"}`, "--expect", "0", "--type", "order.created"); r.code != 0 || r.out != "(integer) 1\n" {
		t.Fatalf("append 1: %+v", r)
	}
	if r := run(t, ns, "", "append", "order-1", `{"status":"paid"}`, "--expect", "1"); r.code != 0 || r.out != "(integer) 2\n" {
		t.Fatalf("append 2: %+v", r)
	}
	r := run(t, ns, "", "append", "order-1", `{"status":"late"}`, "--expect", "1")
	if r.code != 1 || !strings.Contains(r.err, "version conflict") || !strings.Contains(r.err, "at 2") {
		t.Fatalf("stale append: %+v", r)
	}
	if r := run(t, ns, "", "append", "order-1", "x"); r.code != 2 {
		t.Fatalf("append without --expect: %+v", r)
	}
	r = run(t, ns, "", "read", "order-1", "--from", "2")
	if r.code != 0 || r.out != "2 \"{\\\"status\\\":\\\"paid\\\"}\"\n" {
		t.Fatalf("read: %q", r.out)
	}
}

func TestSubscribeFilterFlag(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	run(t, ns, "", "publish", "a", `{"category":"food"}`)
	run(t, ns, "", "publish", "a", `{"category":"tech"}`)
	// --count counts the filtered-out event too: 2 is both events.
	r := run(t, ns, "", "subscribe", "a", "-g", "g", "--from", "beginning", "--filter", `data.category == "tech"`, "--count", "2")
	if r.code != 0 || !strings.Contains(r.out, "tech") || strings.Contains(r.out, "food") {
		t.Fatalf("filtered subscribe: %+v", r)
	}
	if r := run(t, ns, "", "subscribe", "a", "-g", "g", "--filter", "data.("); r.code != 2 {
		t.Fatalf("bad filter: %+v", r)
	}
}

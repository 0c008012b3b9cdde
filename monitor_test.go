package herald_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// TestMonitorFilterMatchTopic: in a topic pattern '*' matches any run of
// characters, '/' included; '?' and classes match one character; '\'
// quotes; a malformed pattern is ErrInvalid and matches nothing.
func TestMonitorFilterMatchTopic(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pattern, topic string
		want           bool
	}{
		{"", "a/b", true},
		{"*", "a/b", true},
		{"*", "", true},
		{"a*", "a/b/c", true},
		{"a/*", "a/b/c", true},
		{"*/c", "a/b/c", true},
		{"a*c", "a/b/c", true},
		{"a*d", "a/b/c", false},
		{"a?b", "a/b", true},
		{"a?b", "a//b", false},
		{"a[/x]b", "a/b", true},
		{"a[^/]b", "a/b", false},
		{"a[!x]b", "a/b", true},
		{"[a-c]*", "b/1", true},
		{"[a-c]*", "d/1", false},
		{"[]]x", "]x", true},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{"é?", "éü", true},
		{"orders.*", "orders.eu/1", true},
		{"orders.*", "ordersXeu", false},
	} {
		f := herald.MonitorFilter{Topics: c.pattern}
		if err := f.Validate(); err != nil {
			t.Errorf("Validate(%q): %v", c.pattern, err)
		}
		if got := f.MatchTopic(c.topic); got != c.want {
			t.Errorf("pattern %q, topic %q: %v, want %v", c.pattern, c.topic, got, c.want)
		}
	}
	for _, bad := range []string{"a[", "a[b", `a\`, "[z-a]", "[]"} {
		f := herald.MonitorFilter{Topics: bad}
		if err := f.Validate(); !errors.Is(err, herald.ErrInvalid) {
			t.Errorf("Validate(%q): %v, want ErrInvalid", bad, err)
		}
		if f.MatchTopic("a") || f.MatchTopic("a[") {
			t.Errorf("the malformed pattern %q matches", bad)
		}
	}
}

// TestMonitorTopicsWithSlash: Monitor with a topic pattern shows topics
// whose name holds '/', both those existing when it starts ("a/b") and
// those created later ("a/c/d"): path.Match's '*' stopped at '/'.
func TestMonitorTopicsWithSlash(t *testing.T) {
	t.Parallel()
	c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.Publish(ctx, "a/b", herald.Event{Data: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "other", herald.Event{Data: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	evs, err := c.Monitor(mctx, herald.MonitorFilter{Topics: "a*", SkipChannels: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"a/b", "a/c/d"} {
		redistest.WaitFor(t, 10*time.Second, "the monitor to show an event of "+topic, func() bool {
			if _, err := c.Publish(ctx, topic, herald.Event{Data: []byte("probe")}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctx, "other", herald.Event{Data: []byte("probe")}); err != nil {
				t.Fatal(err)
			}
			timeout := time.After(300 * time.Millisecond)
			for {
				select {
				case ev := <-evs:
					if ev.Topic == "other" {
						t.Fatalf("pattern a* showed topic %q", ev.Topic)
					}
					if ev.Topic == topic {
						return true
					}
				case <-timeout:
					return false
				}
			}
		})
	}
	if _, err := c.Monitor(ctx, herald.MonitorFilter{Topics: "a["}); !errors.Is(err, herald.ErrInvalid) {
		t.Fatalf("Monitor with a malformed pattern: %v, want ErrInvalid", err)
	}
}

// FuzzMonitorTopicPattern: any pattern and name, no panic; a pattern
// without special characters matches exactly itself, "*" everything, and
// a prefix followed by "*" every name that starts with it.
func FuzzMonitorTopicPattern(f *testing.F) {
	for _, s := range [][2]string{{"orders*", "orders/eu/1"}, {"a?c", "abc"}, {"[a-c]x", "bx"}, {`\*`, "*"}, {"[", "x"}, {`a\`, "a"}, {"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		mf := herald.MonitorFilter{Topics: pattern}
		got := mf.MatchTopic(name) // must not panic
		if mf.Validate() != nil && got && pattern != "" {
			t.Fatalf("malformed pattern %q matched %q", pattern, name)
		}
		if !strings.ContainsAny(pattern, `*?[\`) && pattern != "" && got != (pattern == name) {
			t.Fatalf("literal pattern %q against %q: %v", pattern, name, got)
		}
		if !(herald.MonitorFilter{Topics: "*"}).MatchTopic(name) {
			t.Fatalf("* does not match %q", name)
		}
		if !strings.ContainsAny(pattern, `*?[\`) && !(herald.MonitorFilter{Topics: pattern + "*"}).MatchTopic(pattern+name) {
			t.Fatalf("%q* does not match %q", pattern, pattern+name)
		}
	})
}

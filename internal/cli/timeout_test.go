package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// One-shot commands against a Redis that stops answering once connected
// fail after --timeout, naming it, with exit code 1 (they waited forever).
func TestOneShotCommandsTimeOutWhenRedisStalls(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	if r := run(t, ns, "", "publish", "t", "x"); r.code != 0 {
		t.Fatal(r.err)
	}
	cases := [][]string{
		{"topics"}, {"topic", "info", "t"}, {"topic", "create", "t2"}, {"topic", "delete", "t"}, {"groups", "t"},
		{"group", "info", "t", "g"}, {"group", "create", "t", "g"}, {"group", "seek", "t", "g", "--to", "end"},
		{"group", "delete", "t", "g"}, {"events", "t"}, {"dlq", "list", "t"}, {"dlq", "redrive", "t"},
		{"dlq", "delete", "t"}, {"read", "s"}, {"append", "s", "x", "--expect", "0"}, {"scheduled", "list", "t"},
		{"scheduled", "cancel", "t", "id"}, {"publish", "t", "y"}, {"publish", "t", "y", "--delay", "1m"},
		{"channel", "publish", "c", "m"}, {"channel", "numsub", "c"}, {"channel", "list"}, {"channel", "numpat"},
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			p := newStallProxy(t, true)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			r := runCtx(ctx, t, ns, "", append([]string{"--redis", p.URL(), "--timeout", "1s"}, args...)...)
			took := time.Since(start)
			if r.code != 1 || !strings.Contains(r.err, "--timeout") || !strings.Contains(r.err, "1s") || took > 8*time.Second {
				t.Fatalf("after %s: exit %d, stderr %q; want exit 1 within seconds, naming --timeout 1s", took, r.code, r.err)
			}
			if !p.isStalled() {
				t.Fatal("the command never reached Redis")
			}
		})
	}
	t.Run("default 10s", func(t *testing.T) {
		t.Parallel()
		p := newStallProxy(t, true)
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		start := time.Now()
		r := runCtx(ctx, t, ns, "", "--redis", p.URL(), "topics")
		if took := time.Since(start); r.code != 1 || !strings.Contains(r.err, "--timeout 10s") || took > 20*time.Second {
			t.Fatalf("after %s: exit %d, stderr %q", took, r.code, r.err)
		}
	})
	if r := run(t, ns, "", "--timeout", "-1s", "topics"); r.code != 2 || !strings.Contains(r.err, "--timeout") {
		t.Fatalf("--timeout -1s: %+v", r)
	}
	if r := runBin(t, ns, "", "--help"); !strings.Contains(r.out, "--timeout duration") || !strings.Contains(r.out, `(default 10s)`) {
		t.Fatalf("--help does not show --timeout with its default:\n%s", r.out)
	}
}

// --timeout does not apply to the commands that run until interrupted: a
// 1ms timeout does not stop them.
func TestTimeoutSparesStreamingCommands(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		poke func(c *herald.Client) error // sends what the command waits for
	}{
		{"subscribe", []string{"subscribe", "s", "-g", "g", "--count", "1"}, func(c *herald.Client) error {
			_, err := c.Publish(context.Background(), "s", herald.Event{Data: []byte("e")})
			return err
		}},
		{"monitor", []string{"monitor", "--topic", "s", "--count", "1"}, func(c *herald.Client) error {
			_, err := c.Publish(context.Background(), "s", herald.Event{Data: []byte("e")})
			return err
		}},
		{"channel subscribe", []string{"channel", "subscribe", "ch", "--count", "1"}, func(c *herald.Client) error {
			_, err := c.Broadcast(context.Background(), "ch", []byte("m"))
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := redistest.Namespace(t)
			c := client(t, ns)
			if err := c.CreateTopic(context.Background(), "s", herald.TopicConfig{}); err != nil {
				t.Fatal(err)
			}
			done := make(chan result, 1)
			go func() { done <- run(t, ns, "", append([]string{"--timeout", "1ms"}, tc.args...)...) }()
			var r result
			// It may start after a poke: poke until it has what it waits for.
			redistest.WaitFor(t, 30*time.Second, tc.name+" to get a message", func() bool {
				select {
				case r = <-done:
					return true
				default:
				}
				if err := tc.poke(c); err != nil {
					t.Fatal(err)
				}
				return false
			})
			if r.code != 0 {
				t.Fatalf("%s --timeout 1ms: %+v", tc.name, r)
			}
		})
	}
}

// Ctrl-C ends subscribe while Redis does not answer: during its start, and
// while it runs (ordered and unordered), within seconds and with exit code
// 0 as documented; a drain cut short is a warning.
func TestSubscribeInterruptWhileRedisStalls(t *testing.T) {
	t.Parallel()
	t.Run("starting", func(t *testing.T) {
		t.Parallel()
		ns := redistest.Namespace(t)
		p := newStallProxy(t, true)
		h := startHerald(t, nil, "--redis", p.URL(), "--namespace", ns, "subscribe", "t", "-g", "g")
		redistest.WaitFor(t, 15*time.Second, "the subscriber to reach the stalled Redis", p.isStalled)
		if took := h.interrupt(t, 8*time.Second); h.code != 0 {
			t.Fatalf("exit %d after %s; stderr:\n%s", h.code, took, h.err.text())
		}
	})
	for _, mode := range []string{"ordered", "unordered"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ns := redistest.Namespace(t)
			if r := run(t, ns, "", "publish", "t", "one"); r.code != 0 {
				t.Fatal(r.err)
			}
			p := newStallProxy(t, false)
			args := []string{"--redis", p.URL(), "--namespace", ns, "subscribe", "t", "-g", "g", "--from", "beginning"}
			if mode == "unordered" {
				args = append(args, "--unordered")
			}
			h := startHerald(t, nil, args...)
			redistest.WaitFor(t, 15*time.Second, "the first event", func() bool { return h.out.has(`"one"`) })
			p.stall()
			took := h.interrupt(t, 8*time.Second)
			if h.code != 0 || took > 6*time.Second {
				t.Fatalf("exit %d after %s; stderr:\n%s", h.code, took, h.err.text())
			}
			if strings.Contains(h.err.text(), "drain: context deadline exceeded") {
				t.Fatalf("a cut-short drain reported as a failure:\n%s", h.err.text())
			}
		})
	}
}

// monitor and channel subscribe end on Ctrl-C while Redis does not answer.
func TestStreamingCommandsInterruptWhileRedisStalls(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		args  []string
		ready func(ns string, h *proc) bool
	}{
		{"monitor", []string{"monitor", "--topic", "t"}, func(ns string, h *proc) bool {
			_ = runBin(t, ns, "", "publish", "t", "probe")
			return h.out.has(" t/0 ")
		}},
		{"channel subscribe", []string{"channel", "subscribe", "ch"}, func(ns string, h *proc) bool { return h.out.has("subscribe") }},
		{"channel psubscribe", []string{"channel", "psubscribe", "ch*"}, func(ns string, h *proc) bool { return h.out.has("psubscribe") }},
		{"monitor --raw", []string{"monitor", "--raw"}, func(ns string, h *proc) bool {
			_ = runBin(t, ns, "", "channel", "publish", "probe", "x")
			return h.out.has("probe")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := redistest.Namespace(t)
			if r := run(t, ns, "", "topic", "create", "t"); r.code != 0 {
				t.Fatal(r.err)
			}
			p := newStallProxy(t, false)
			h := startHerald(t, nil, append([]string{"--redis", p.URL(), "--namespace", ns}, tc.args...)...)
			redistest.WaitFor(t, 15*time.Second, tc.name+" to run", func() bool { return tc.ready(ns, h) })
			p.stall()
			if took := h.interrupt(t, 8*time.Second); h.code != 0 || took > 5*time.Second {
				t.Fatalf("exit %d after %s; stderr:\n%s", h.code, took, h.err.text())
			}
		})
	}
}

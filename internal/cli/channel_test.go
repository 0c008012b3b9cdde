package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/redistest"
)

// lineReader collects the lines a process prints, for bounded waits.
type lineReader struct {
	mu    sync.Mutex
	lines []string
}

func (lr *lineReader) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lr.mu.Lock()
		lr.lines = append(lr.lines, sc.Text())
		lr.mu.Unlock()
	}
}

func (lr *lineReader) has(sub string) bool {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	for _, l := range lr.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func (lr *lineReader) text() string {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return strings.Join(lr.lines, "\n")
}

// startProc starts a process we own; it is killed by pid at the end of the test.
func startProc(t *testing.T, name string, args ...string) *lineReader {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // it may have exited; Wait reaps it either way
		_ = cmd.Wait()
	})
	lr := &lineReader{}
	go lr.consume(out)
	return lr
}

func port(t *testing.T) string {
	return strings.TrimPrefix(redistest.URL(t), "redis://127.0.0.1:")
}

func TestRedisCliReceivesHeraldChannelPublish(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	ch := ns + ":news"
	rc := startProc(t, "redis-cli", "-p", port(t), "SUBSCRIBE", ch)
	c := client(t, ns)
	redistest.WaitFor(t, 10*time.Second, "redis-cli to subscribe", func() bool {
		m, err := c.NumSub(context.Background(), ch)
		return err == nil && m[ch] == 1
	})
	// Not a terminal: raw, like redis-cli's "1"; --no-raw: like redis-cli on a terminal.
	r := run(t, ns, "", "channel", "publish", ch, "Hello World!")
	if r.code != 0 || r.out != "1\n" {
		t.Fatalf("channel publish: %+v", r)
	}
	r = run(t, ns, "", "channel", "publish", "--no-raw", ch, "Hello World!")
	if r.code != 0 || r.out != "(integer) 1\n" {
		t.Fatalf("channel publish --no-raw: %+v", r)
	}
	redistest.WaitFor(t, 10*time.Second, "redis-cli to print the message", func() bool { return rc.has("Hello World!") })
}

func TestHeraldChannelSubscribeReceivesRedisCliPublish(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	ch := ns + ":news"
	done := make(chan result, 1)
	go func() { done <- run(t, ns, "", "channel", "subscribe", ch, "--count", "1", "--no-raw") }()
	c := client(t, ns)
	redistest.WaitFor(t, 10*time.Second, "herald to subscribe", func() bool {
		m, err := c.NumSub(context.Background(), ch)
		return err == nil && m[ch] == 1
	})
	out, err := exec.Command("redis-cli", "-p", port(t), "PUBLISH", ch, "from redis-cli").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("redis-cli PUBLISH: %q %v", out, err)
	}
	select {
	case r := <-done:
		want := "Reading messages... (press Ctrl-C to quit)\n1) \"subscribe\"\n2) \"" + ch + "\"\n3) (integer) 1\n" +
			"1) \"message\"\n2) \"" + ch + "\"\n3) \"from redis-cli\"\n"
		if r.code != 0 || r.out != want {
			t.Fatalf("herald channel subscribe printed:\n%s\nwant:\n%s\nerr %s", r.out, want, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("herald channel subscribe did not exit after 1 message")
	}
}

func TestChannelPsubscribeMatchesPattern(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	done := make(chan result, 1)
	go func() { done <- run(t, ns, "", "-o", "json", "channel", "psubscribe", ns+":article.*", "--count", "2") }()
	c := client(t, ns)
	redistest.WaitFor(t, 10*time.Second, "herald to psubscribe", func() bool {
		n, err := c.NumPat(context.Background())
		return err == nil && n >= 1
	})
	for _, ch := range []string{"article.created", "comment.created", "article.updated"} {
		if r := run(t, ns, "", "channel", "publish", ns+":"+ch, ch+"!"); r.code != 0 {
			t.Fatal(r.err)
		}
	}
	r := <-done
	var kinds, channels []string
	for _, line := range strings.Split(strings.TrimSpace(r.out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		kinds = append(kinds, m["kind"].(string))
		channels = append(channels, strings.TrimPrefix(m["channel"].(string), ns+":"))
		if m["kind"] == "pmessage" && m["pattern"] != ns+":article.*" {
			t.Fatalf("pattern = %v", m["pattern"])
		}
	}
	if strings.Join(kinds, ",") != "psubscribe,pmessage,pmessage" || channels[1] != "article.created" || channels[2] != "article.updated" {
		t.Fatalf("kinds %v channels %v", kinds, channels)
	}
}

func TestMonitorShowsEventFromAnotherProcess(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	if r := run(t, ns, "", "topic", "create", "watched"); r.code != 0 {
		t.Fatal(r.err)
	}
	mon := startProc(t, binary, "--redis", redistest.URL(t), "--namespace", ns, "monitor", "--topic", "watched", "-o", "json")
	raw := startProc(t, binary, "--redis", redistest.URL(t), "--namespace", ns, "monitor", "--raw")
	deadline := time.Now().Add(15 * time.Second)
	for !mon.has(`"type":"probe.event"`) || !raw.has(`"XADD" "`+ns+`:{watched/0}:s"`) {
		if time.Now().After(deadline) {
			t.Fatalf("monitor did not show the event.\nmonitor:\n%s\nraw (last lines):\n%s", mon.text(), tail(raw.text(), 20))
		}
		if r := runBin(t, ns, "", "publish", "watched", "payload", "--type", "probe.event", "--key", "k1"); r.code != 0 {
			t.Fatal(r.err)
		}
		time.Sleep(200 * time.Millisecond) // pace the probe publishes of this bounded loop
	}
	var ev map[string]any
	for _, l := range strings.Split(mon.text(), "\n") {
		if strings.Contains(l, "probe.event") {
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if ev["topic"] != "watched" || ev["key"] != "k1" || ev["size"] != 7.0 || ev["kind"] != "event" || ev["position"] == "" {
		t.Fatalf("monitor event = %v", ev)
	}
	if !raw.has("[127.0.0.1:" + port(t) + "]") {
		t.Fatal("raw monitor lines are not labelled with their node")
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Without a terminal, herald's channel commands print byte for byte what
// redis-cli prints without one (its raw form); --raw forces it.
func TestChannelRawOutputMatchesRedisCli(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	ch := ns + ":raw news"
	redisCli := func(args ...string) string {
		out, err := exec.Command("redis-cli", append([]string{"-p", port(t)}, args...)...).Output()
		if err != nil {
			t.Fatalf("redis-cli %v: %v", args, err)
		}
		return string(out)
	}
	rc := startProc(t, "redis-cli", "-p", port(t), "SUBSCRIBE", ch)
	done := make(chan result, 1)
	go func() { done <- run(t, ns, "", "channel", "subscribe", ch, "--count", "1") }()
	c := client(t, ns)
	redistest.WaitFor(t, 10*time.Second, "both to subscribe", func() bool {
		m, err := c.NumSub(context.Background(), ch)
		return err == nil && m[ch] == 2
	})
	for _, args := range [][]string{{"numsub", ch, ns + ":none"}, {"list", ns + ":none*"}, {"list", ns + ":raw*"}} {
		redisArgs := map[string][]string{"numsub": {"PUBSUB", "NUMSUB"}, "numpat": {"PUBSUB", "NUMPAT"}, "list": {"PUBSUB", "CHANNELS"}}[args[0]]
		want := redisCli(append(redisArgs, args[1:]...)...)
		if r := run(t, ns, "", append([]string{"channel"}, args...)...); r.code != 0 || r.out != want {
			t.Fatalf("herald channel %v printed %q, redis-cli %q (%s)", args, r.out, want, r.err)
		}
	}
	if r := run(t, ns, "", "channel", "publish", ch, "two words"); r.code != 0 || r.out != "2\n" {
		t.Fatalf("channel publish: %+v", r)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("herald channel subscribe did not exit after 1 message")
	}
	redistest.WaitFor(t, 10*time.Second, "redis-cli to print the message", func() bool { return rc.has("two words") })
	if want := rc.text() + "\n"; r.code != 0 || r.out != want {
		t.Fatalf("herald channel subscribe printed %q, redis-cli %q", r.out, want)
	}
	if r := run(t, ns, "", "channel", "numpat"); r.code != 0 || strings.Trim(r.out, "0123456789") != "\n" {
		t.Fatalf("channel numpat: %+v", r)
	}
	if r := run(t, ns, "", "channel", "numpat", "--raw", "--no-raw"); r.code != 2 {
		t.Fatalf("--raw --no-raw: %+v", r)
	}
}

// On a terminal (script(1) gives the command one), channel commands print
// redis-cli's formatted replies; --raw forces the raw form there.
func TestChannelOutputOnTerminal(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) is not installed")
	}
	redistest.Skip(t)
	onTTY := func(args ...string) string {
		line := binary + " --redis " + redistest.URL(t) + " " + strings.Join(args, " ")
		out, err := exec.Command("script", "-qec", line, "/dev/null").Output()
		if err != nil {
			t.Fatalf("%s: %v %s", line, err, out)
		}
		return strings.ReplaceAll(string(out), "\r\n", "\n")
	}
	ns := redistest.Namespace(t)
	if got := onTTY("channel", "numsub", ns+":nobody"); got != "1) \""+ns+":nobody\"\n2) (integer) 0\n" {
		t.Fatalf("numsub on a terminal: %q", got)
	}
	if got := onTTY("channel", "publish", ns+":nobody", "hi", "--raw"); got != "0\n" {
		t.Fatalf("publish --raw on a terminal: %q", got)
	}
}

package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/cli"
	"github.com/heraldbus/herald/internal/redistest"
)

var binary string // the herald binary, built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "herald")
	out, err := exec.Command("go", "build", "-o", binary, "../../cmd/herald").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build herald: %v\n%s", err, out)
		os.Exit(1)
	}
	code := redistest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	out, err string
	code     int
}

// run runs the CLI in-process with global flags for the test's server and namespace.
func run(t testing.TB, ns string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return runCtx(ctx, t, ns, stdin, args...)
}

func runCtx(ctx context.Context, t testing.TB, ns string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	full := append([]string{"--redis", redistest.URL(t), "--namespace", ns}, args...)
	err := cli.Run(ctx, full, cli.IO{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	if err != nil {
		errb.WriteString(err.Error())
	}
	return result{out.String(), errb.String(), cli.ExitCode(err)}
}

// runBin runs the built binary.
func runBin(t testing.TB, ns string, stdin string, args ...string) result {
	t.Helper()
	full := append([]string{"--redis", redistest.URL(t), "--namespace", ns}, args...)
	cmd := exec.Command(binary, full...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func client(t testing.TB, ns string) *herald.Client {
	c, err := herald.New(context.Background(), herald.Config{URL: redistest.URL(t), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// 100,000 events of 100 bytes through the stdin path, over 8 partitions,
// consumed by 3 consumers in one group: every event handled, none missing.
func TestStdinBulkPublishConsumedByThreeConsumers(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	const n = 100000
	if r := run(t, ns, "", "topic", "create", "bulk", "--partitions", "8"); r.code != 0 {
		t.Fatal(r.err)
	}
	var in strings.Builder
	for i := 0; i < n; i++ {
		line := fmt.Sprintf("event-%06d-", i)
		in.WriteString(line + strings.Repeat("x", 100-len(line)) + "\n")
	}
	c := client(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	seen := make(map[string]int, n)
	perConsumer := map[string]int{}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("c%d", i)
		_, err := c.Subscribe(ctx, "bulk", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
			if len(m.Data) != 100 {
				return herald.Permanent(fmt.Errorf("got %d bytes", len(m.Data)))
			}
			mu.Lock()
			seen[string(m.Data[:13])]++
			perConsumer[name]++
			mu.Unlock()
			return nil
		}), herald.Consumer(name), herald.From(herald.StartBeginning))
		if err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	r := run(t, ns, in.String(), "publish", "bulk", "-")
	if r.code != 0 || !strings.Contains(r.out, "published 100000 events") {
		t.Fatalf("publish: code %d out %q err %q", r.code, r.out, r.err)
	}
	t.Logf("published %d events in %v", n, time.Since(start))
	redistest.WaitFor(t, 90*time.Second, "all events handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == n })
	t.Logf("consumed in %v; per consumer %v", time.Since(start), perConsumer)
	info, err := c.TopicInfo(ctx, "bulk")
	if err != nil || info.Length != n {
		t.Fatalf("stored %d, err %v", info.Length, err)
	}
	for p, pi := range info.Partitions {
		if pi.Length < n/16 {
			t.Errorf("partition %d holds only %d events: not spread", p, pi.Length)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < n; i++ {
		if seen[fmt.Sprintf("event-%06d-", i)] == 0 {
			t.Fatalf("event %d never handled", i)
		}
	}
	if len(perConsumer) != 3 {
		t.Fatalf("only %d consumers handled events: %v", len(perConsumer), perConsumer)
	}
}

// A consumer process is killed with SIGKILL while it holds pending entries;
// another consumer handles all of them after the visibility timeout.
func TestKilledConsumerProcessEntriesReclaimed(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	c := client(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, "jobs", herald.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--redis", redistest.URL(t), "--namespace", ns, "subscribe", "jobs", "--group", "workers",
		"--from", "beginning", "--concurrency", "5", "--exec", "sleep 60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own process group, so its children die with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	defer func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) }() // gone already when the test passes
	for i := 0; i < 5; i++ {
		if _, err := c.Publish(ctx, "jobs", herald.Event{ID: fmt.Sprintf("job-%d", i), Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	redistest.WaitFor(t, 20*time.Second, "the consumer process to hold 5 pending entries", func() bool {
		gs, err := c.Groups(ctx, "jobs")
		return err == nil && len(gs) == 1 && gs[0].Pending == 5
	})
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: Wait reports the signal
	var mu sync.Mutex
	got := map[string]bool{}
	sub, err := c.Subscribe(ctx, "jobs", "workers", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		mu.Lock()
		got[m.ID] = true
		mu.Unlock()
		return nil
	}), herald.VisibilityTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 20*time.Second, "all 5 entries of the killed consumer", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 5 })
	if st := sub.Stats(); st.Reclaimed != 5 {
		t.Fatalf("reclaimed %d, want 5", st.Reclaimed)
	}
	redistest.WaitFor(t, 5*time.Second, "nothing pending", func() bool {
		gs, _ := c.Groups(ctx, "jobs")
		return len(gs) == 1 && gs[0].Pending == 0
	})
}

func TestBadInputExitsTwoAndWritesNothing(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	big := strings.Repeat("a", herald.DefaultMaxEventBytes+1)
	cases := []struct {
		name, stdin, want string
		args              []string
	}{
		{"space in topic", "", "topic name", []string{"publish", "bad name", "x"}},
		{"brace in topic", "", "topic name", []string{"publish", "a{b}", "x"}},
		{"empty topic", "", "topic name is empty", []string{"publish", "", "x"}},
		{"long topic", "", "at most 200", []string{"publish", strings.Repeat("t", 201), "x"}},
		{"oversized payload", big + "\n", "event too large", []string{"publish", "t", "-"}},
		{"malformed url", "", "Redis URL", []string{"--redis", "http//nope", "topics"}},
		{"bad scheme", "", "scheme", []string{"--redis", "mysql://h:1", "topics"}},
		{"unknown flag", "", "unknown flag", []string{"publish", "t", "x", "--bogus"}},
		{"missing group", "", "--group is required", []string{"subscribe", "t"}},
		{"bad from", "", "an RFC 3339 time", []string{"subscribe", "t", "-g", "g", "--from", "yesterday"}},
		{"bad header", "", "NAME=VALUE", []string{"publish", "t", "x", "-H", "novalue"}},
		{"bad output", "", "text or json", []string{"-o", "xml", "topics"}},
		{"too many args", "", "accepts 2 arg", []string{"publish", "t", "x", "y"}},
		{"unknown command", "", "unknown command", []string{"frobnicate"}},
		{"negative partitions", "", "partitions -3 out of range", []string{"topic", "create", "t", "--partitions", "-3"}},
		{"too many partitions", "", "use 1..1024", []string{"topic", "create", "t", "--partitions", "5000"}},
		{"negative max-len", "", "max length -1 is negative", []string{"topic", "create", "t", "--max-len", "-1"}},
		// Checked before connecting: no Redis listens on port 1.
		{"negative concurrency, no redis", "", "concurrency -1 is negative", []string{"--redis", "redis://127.0.0.1:1", "subscribe", "t", "-g", "g", "--concurrency", "-1"}},
		{"negative lease, no redis", "", "lease time -1s is negative", []string{"--redis", "redis://127.0.0.1:1", "subscribe", "t", "-g", "g", "--lease", "-1s"}},
		{"negative dlq limit, no redis", "", "--limit -5", []string{"--redis", "redis://127.0.0.1:1", "dlq", "list", "t", "-n", "-5"}},
		{"bad dead letter id, no redis", "", "is not a stream id", []string{"--redis", "redis://127.0.0.1:1", "dlq", "redrive", "t", "--id", "nonsense"}},
		{"negative partition, no redis", "", "partition -1 is negative", []string{"--redis", "redis://127.0.0.1:1", "events", "t", "--partition", "-1"}},
		{"listen port out of range", "", "not a number from 0 to 65535", []string{"--redis", "redis://127.0.0.1:1", "serve", "--listen", "127.0.0.1:99999"}},
		{"negative expect, no redis", "", "--expect -5 is negative", []string{"--redis", "redis://127.0.0.1:1", "append", "e", "x", "--expect", "-5"}},
		{"bad stream name, no redis", "", "stream name", []string{"--redis", "redis://127.0.0.1:1", "read", "bad{x}"}},
		{"bad topic name, no redis", "", "topic name", []string{"--redis", "redis://127.0.0.1:1", "dlq", "list", "bad{x}"}},
		{"bad group name, no redis", "", "group name", []string{"--redis", "redis://127.0.0.1:1", "group", "info", "t", "bad{g}"}},
		{"bad topic flags, no redis", "", "partitions -3 out of range", []string{"--redis", "redis://127.0.0.1:1", "topic", "create", "t", "--partitions", "-3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, ns, tc.stdin, tc.args...)
			if r.code != 2 {
				t.Fatalf("exit code %d, want 2; stderr %q", r.code, r.err)
			}
			if !strings.Contains(r.err, tc.want) {
				t.Fatalf("stderr %q does not name the problem (%q)", r.err, tc.want)
			}
		})
	}
	c := client(t, ns)
	ts, err := c.Topics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range ts {
		if ti.Length != 0 {
			t.Fatalf("topic %s holds %d events after refused input", ti.Name, ti.Length)
		}
	}
}

func TestCLIDeadLetterAndRedrive(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	if r := run(t, ns, "", "publish", "mail", "hello", "--type", "mail.send"); r.code != 0 {
		t.Fatal(r.err)
	}
	// A group that starts at the beginning and always fails: 2 attempts, then a dead letter.
	done := make(chan result, 1)
	failCtx, stopFailing := context.WithCancel(context.Background())
	defer stopFailing()
	go func() {
		done <- runCtx(failCtx, t, ns, "", "subscribe", "mail", "-g", "mailer", "--from", "beginning", "--exec", "echo smtp down >&2; exit 1",
			"--max-attempts", "2", "--backoff", "10ms", "--count", "1")
	}()
	c := client(t, ns)
	redistest.WaitFor(t, 20*time.Second, "a dead letter", func() bool {
		dls, _ := c.DeadLetters(context.Background(), "mail", herald.Query{})
		return len(dls) == 1
	})
	stopFailing() // an interrupt: the failing subscriber drains and exits
	select {
	case r := <-done:
		if r.code != 0 {
			t.Fatalf("interrupted subscriber: %+v", r)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("subscriber did not exit after the interrupt")
	}
	r := run(t, ns, "", "-o", "json", "dlq", "list", "mail")
	var dl map[string]any
	if err := json.Unmarshal([]byte(r.out), &dl); err != nil || dl["group"] != "mailer" || !strings.Contains(dl["error"].(string), "smtp down") || dl["attempts"] != 2.0 {
		t.Fatalf("dlq list = %q (%v)", r.out, err)
	}
	if r := run(t, ns, "", "dlq", "redrive", "mail"); r.code != 0 || strings.TrimSpace(r.out) != "(integer) 1" {
		t.Fatalf("redrive: %+v", r)
	}
	// The same group now succeeds with the redriven event.
	r = run(t, ns, "", "subscribe", "mail", "-g", "mailer", "--exec", "cat; echo \" attempt=$HERALD_ATTEMPT\"", "--count", "1")
	if r.code != 0 || strings.TrimSpace(r.out) != "hello attempt=1" {
		t.Fatalf("after redrive: %+v", r)
	}
	if r := run(t, ns, "", "dlq", "list", "mail"); strings.TrimSpace(r.out) != "(empty list)" {
		t.Fatalf("dead letters left: %q", r.out)
	}
}

func TestCLIPublishSameIDTwice(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	r1 := run(t, ns, "", "publish", "t", "once", "--id", "evt-1")
	r2 := run(t, ns, "", "publish", "t", "once", "--id", "evt-1")
	if r1.code != 0 || r2.code != 0 {
		t.Fatalf("%+v %+v", r1, r2)
	}
	pos := strings.TrimSpace(r1.out)
	if r2.out != pos+" (duplicate: already stored)\n" {
		t.Fatalf("second publish printed %q, want the first position %q marked duplicate", r2.out, pos)
	}
	r := run(t, ns, "", "-o", "json", "topics")
	if !strings.Contains(r.out, `"length":1`) {
		t.Fatalf("topics = %s", r.out)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

package cli_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// storedData returns the data of the events stored in topic, in order.
func storedData(t *testing.T, c *herald.Client, topic string) []string {
	t.Helper()
	evs, err := c.Events(context.Background(), topic, herald.Query{})
	if err != nil {
		return nil // not created yet
	}
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = string(ev.Data)
	}
	return out
}

// Lines from a pipe that stays open are published as they come, not held
// until 1000 lines or the end of input (tail -f log | herald publish t -);
// a line is complete only at its newline; Ctrl-C ends the command with
// exit code 0 and reports what was published.
func TestPublishStdinSendsLinesAsTheyCome(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	c := client(t, ns)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	h := startHerald(t, pr, "--redis", redistest.URL(t), "--namespace", ns, "publish", "logs", "-")
	pr.Close() // the child holds its own copy
	if _, err := pw.WriteString("one\ntwo\n"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, "both lines published before the end of input", func() bool {
		return strings.Join(storedData(t, c, "logs"), ",") == "one,two"
	})
	if _, err := pw.WriteString("three\nfo"); err != nil { // "fo" is not a line yet
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, "the third line, with a partial line behind it", func() bool {
		return strings.Join(storedData(t, c, "logs"), ",") == "one,two,three"
	})
	if _, err := pw.WriteString("ur\n"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, "the fourth line", func() bool {
		return strings.Join(storedData(t, c, "logs"), ",") == "one,two,three,four"
	})
	if _, err := pw.WriteString("five\r\n"); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 10*time.Second, "the fifth line", func() bool { return len(storedData(t, c, "logs")) == 5 })
	// Ctrl-C while herald waits for more input: it stops and reports.
	if took := h.interrupt(t, 10*time.Second); h.code != 0 || !h.out.has("published 5 events to logs") {
		t.Fatalf("after Ctrl-C (%s): exit %d\nstdout:\n%s\nstderr:\n%s", took, h.code, h.out.text(), h.err.text())
	}
	if got := strings.Join(storedData(t, c, "logs"), ","); got != "one,two,three,four,five" {
		t.Fatalf("stored %q", got)
	}
}

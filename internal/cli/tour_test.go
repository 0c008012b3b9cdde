package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
	"github.com/heraldbus/herald/internal/server"
)

// The README's "A 5-minute tour" is a test: every command of its sh blocks
// runs as written, in the directory of a `herald serve` that this test
// starts (so the CLI uses its managed, password-protected redis-server), and
// prints what the README shows after it.
//
// How the README is read:
//   - a line of a sh block is a command; "  # note" after it is a note;
//   - the "# " lines after a command are its output ("  <- note" ends a
//     note); "# ..." stands for any lines, "..." inside a line for any text;
//   - a command ending in "&" runs in the background: the lines after it are
//     what it prints at once (waited for), and what it prints later is
//     matched after the next command's own output; it must exit by the end
//     of its block;
//   - a command that fails must show its error ("# herald: ...");
//   - curl runs as net/http against the server (http://127.0.0.1:8080 is the
//     server's address); curl -N reads the SSE stream until the lines shown
//     arrived;
//   - channel commands get --no-raw: the README shows them on a terminal;
//   - output is compared after normalising stream ids, UUIDs, times and
//     durations, and blank lines are left out; a table is compared by column
//     name, so that new columns do not break the tour.

// tourStep is one command of the tour with the output the README shows.
type tourStep struct {
	line int
	cmd  string
	bg   bool
	want []string
}

var (
	tourNote   = regexp.MustCompile(`\s{2,}#\s.*$`)
	tourArrow  = regexp.MustCompile(`\s{2,}<-\s.*$`)
	tableHead  = regexp.MustCompile(`^[A-Z][A-Z]*( [A-Z]+)*(  +[A-Z][A-Z]*( [A-Z]+)*)+$`)
	tableCol   = regexp.MustCompile(`\S+( \S+)*`)
	reUUID     = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	reUUIDHead = regexp.MustCompile(`[0-9a-f]{8}-\.\.\.`)
	reStreamID = regexp.MustCompile(`\d{13}-\d+`)
	reRFC3339  = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`)
	reClock    = regexp.MustCompile(`\b\d{2}:\d{2}:\d{2}\.\d{3}\b`)
)

// parseTour returns the sh blocks of the README's tour section.
func parseTour(t *testing.T, readme string) [][]tourStep {
	t.Helper()
	lines := strings.Split(readme, "\n")
	var (
		blocks  [][]tourStep
		in, sh  bool
		section bool
	)
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "## "):
			section = strings.HasPrefix(l, "## A 5-minute tour")
			continue
		case !section:
			continue
		case strings.HasPrefix(l, "```"):
			if in {
				in = false
				continue
			}
			in, sh = true, strings.TrimPrefix(l, "```") == "sh"
			if sh {
				blocks = append(blocks, nil)
			}
			continue
		case !in || !sh || strings.TrimSpace(l) == "":
			continue
		}
		b := &blocks[len(blocks)-1]
		if l == "#" || strings.HasPrefix(l, "# ") {
			if len(*b) == 0 {
				t.Fatalf("README.md:%d: output before any command", i+1)
			}
			out := strings.TrimPrefix(strings.TrimPrefix(l, "#"), " ")
			(*b)[len(*b)-1].want = append((*b)[len(*b)-1].want, tourArrow.ReplaceAllString(out, ""))
			continue
		}
		cmd := strings.TrimSpace(tourNote.ReplaceAllString(l, ""))
		st := tourStep{line: i + 1, cmd: cmd}
		if c, ok := strings.CutSuffix(cmd, "&"); ok && !strings.HasSuffix(c, "&") {
			st.cmd, st.bg = strings.TrimSpace(c), true
		}
		*b = append(*b, st)
	}
	return blocks
}

// shellWords splits a command line of words and quoted strings; ok is false
// when it holds shell syntax (pipes, redirections, lists).
func shellWords(s string) (words []string, ok bool) {
	var (
		cur   strings.Builder
		quote rune
		have  bool
	)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, have = r, true
		case r == ' ' || r == '\t':
			if have {
				words, cur, have = append(words, cur.String()), strings.Builder{}, false
			}
		case strings.ContainsRune("|&;<>$`\\*?", r):
			return nil, false
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		words = append(words, cur.String())
	}
	return words, quote == 0
}

// norm replaces what differs between runs: stream ids, UUIDs, times, durations.
func norm(s string) string {
	s = reUUIDHead.ReplaceAllString(reUUID.ReplaceAllString(s, "<UUID>"), "<UUID>")
	s = reRFC3339.ReplaceAllString(s, "<TIME>")
	s = reClock.ReplaceAllString(s, "<CLOCK>")
	s = reStreamID.ReplaceAllString(s, "<ID>")
	words := strings.Fields(s)
	for i, w := range words {
		k, v, found := strings.Cut(w, "=")
		if !found {
			k, v = "", w
		}
		if strings.ContainsAny(v, "smhµun") && v != "" && v[0] >= '0' && v[0] <= '9' {
			if _, err := time.ParseDuration(strings.ReplaceAll(v, "µ", "u")); err == nil {
				if found {
					words[i] = k + "=<DUR>"
				} else {
					words[i] = "<DUR>"
				}
			}
		}
	}
	return strings.Join(words, " ")
}

func lineMatches(want, got string) bool {
	parts := strings.Split(norm(want), "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$").MatchString(norm(got))
}

// linesMatch matches got against want, where a "..." line stands for any lines.
func linesMatch(want, got []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	if strings.TrimSpace(want[0]) == "..." {
		for i := 0; i <= len(got); i++ {
			if linesMatch(want[1:], got[i:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && lineMatches(want[0], got[0]) && linesMatch(want[1:], got[1:])
}

// columns returns the column names of a table header with their offsets.
func columns(header string) (names []string, at []int) {
	for _, m := range tableCol.FindAllStringIndex(header, -1) {
		names, at = append(names, header[m[0]:m[1]]), append(at, m[0])
	}
	return names, at
}

func cell(row string, at []int, i int) string {
	if at[i] >= len(row) {
		return ""
	}
	end := len(row)
	if i+1 < len(at) && at[i+1] < end {
		end = at[i+1]
	}
	return strings.TrimSpace(row[at[i]:end])
}

// tableMatches compares the columns the README shows, by name.
func tableMatches(want, got []string) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d table lines, want %d", len(got), len(want))
	}
	wn, wat := columns(want[0])
	gn, gat := columns(got[0])
	for i, name := range wn {
		j := -1
		for k, n := range gn {
			if n == name {
				j = k
			}
		}
		if j < 0 {
			return fmt.Errorf("no column %s in %q", name, got[0])
		}
		for r := 1; r < len(want); r++ {
			if w, g := cell(want[r], wat, i), cell(got[r], gat, j); norm(w) != norm(g) {
				return fmt.Errorf("row %d column %s: %q, want %q", r, name, g, w)
			}
		}
	}
	return nil
}

func checkOutput(t *testing.T, st tourStep, got []string) {
	t.Helper()
	if len(st.want) > 0 && tableHead.MatchString(st.want[0]) {
		if err := tableMatches(st.want, got); err != nil {
			t.Errorf("README.md:%d: %s\n%s\ngot:\n%s\nREADME shows:\n%s", st.line, st.cmd, err, strings.Join(got, "\n"), strings.Join(st.want, "\n"))
		}
		return
	}
	if !linesMatch(st.want, got) {
		t.Errorf("README.md:%d: %s\ngot:\n%s\nREADME shows:\n%s", st.line, st.cmd, strings.Join(got, "\n"), strings.Join(st.want, "\n"))
	}
}

func nonBlank(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimRight(l, " \t\r"))
		}
	}
	return out
}

// tourJob is a background command of the tour.
type tourJob struct {
	st     tourStep
	out    *lineReader
	seen   int
	exited chan struct{}
}

func TestReadmeTour(t *testing.T) {
	// Serial: its steps run under fixed 10-15 s budgets, which parallel
	// neighbours on a small machine can eat (a subscribe step was killed).
	redistest.Skip(t)
	start := time.Now()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := parseTour(t, string(readme))
	if len(blocks) < 5 {
		t.Fatalf("found %d sh blocks in the README's tour", len(blocks))
	}
	dir := t.TempDir()
	if err := os.Symlink(binary, filepath.Join(dir, "herald")); err != nil {
		t.Fatal(err)
	}
	examples, _ := filepath.Abs("../../_examples")
	if err := os.Symlink(examples, filepath.Join(dir, "_examples")); err != nil {
		t.Fatal(err)
	}
	// The tour's curl commands use the default address; the test's server
	// listens on a free port instead, so check the default is the README's.
	if out, err := exec.Command(binary, "serve", "--help").Output(); err != nil || !strings.Contains(string(out), `(default "127.0.0.1:8080")`) {
		t.Fatalf("herald serve no longer listens on 127.0.0.1:8080 by default, as the tour says: %v\n%s", err, out)
	}
	srv := startServe(t, dir, []string{"HERALD_LISTEN=" + freeAddr(t)})
	var env []string // the CLI finds the managed redis-server in ./herald-data
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	rurl, ok := server.ManagedURL(filepath.Join(dir, "herald-data"))
	if !ok {
		t.Fatal("no managed redis-server in herald-data")
	}
	c, err := herald.New(context.Background(), herald.Config{URL: rurl})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	command := func(ctx context.Context, st tourStep) *exec.Cmd {
		line := st.cmd
		if strings.HasPrefix(line, "./herald channel ") {
			line += " --no-raw"
		}
		var cmd *exec.Cmd
		if w, ok := shellWords(line); ok {
			if w[0] == "./herald" {
				w[0] = filepath.Join(dir, "herald")
			}
			cmd = exec.CommandContext(ctx, w[0], w[1:]...)
		} else {
			cmd = exec.CommandContext(ctx, "sh", "-c", line)
		}
		cmd.Dir, cmd.Env = dir, env
		return cmd
	}
	for _, block := range blocks {
		var jobs []*tourJob
		// bgLines waits for the background jobs to print n more lines (or exit).
		bgLines := func(n int) []string {
			var got []string
			deadline := time.Now().Add(10 * time.Second)
			for {
				got = got[:0]
				alive := false
				for _, j := range jobs {
					lines := nonBlank(j.out.text())
					got = append(got, lines[min(j.seen, len(lines)):]...)
					select {
					case <-j.exited:
					default:
						alive = true
					}
				}
				if len(got) >= n || !alive || time.Now().After(deadline) {
					for _, j := range jobs {
						j.seen = len(nonBlank(j.out.text()))
					}
					return got
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		for _, st := range block {
			switch {
			case st.cmd == "go build -o herald ./cmd/herald":
				continue // TestMain built it
			case strings.HasPrefix(st.cmd, "curl "):
				checkOutput(t, st, curl(t, st, srv.url))
			case st.bg:
				var numpat int64
				if strings.Contains(st.cmd, " monitor") {
					numpat, _ = c.NumPat(context.Background())
				}
				cmd := command(context.Background(), st)
				pr, pw := io.Pipe()
				cmd.Stdout, cmd.Stderr = pw, pw
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				j := &tourJob{st: st, out: &lineReader{}, exited: make(chan struct{})}
				go j.out.consume(pr)
				go func() { _ = cmd.Wait(); _ = pw.Close(); close(j.exited) }()
				t.Cleanup(func() { _ = cmd.Process.Kill(); <-j.exited })
				jobs = append(jobs, j)
				// Ready: it printed what the README shows, or (monitor) it
				// pattern-subscribed, which Monitor does only after it has read
				// where every topic ends: what the next step publishes is shown.
				redistest.WaitFor(t, 10*time.Second, "README.md:"+fmt.Sprint(st.line)+" to start", func() bool {
					if numpat > 0 || strings.Contains(st.cmd, " monitor") {
						n, err := c.NumPat(context.Background())
						return err == nil && n > numpat
					}
					return len(nonBlank(j.out.text())) >= len(st.want)
				})
				got := nonBlank(j.out.text())
				j.seen = len(got)
				checkOutput(t, st, got)
			default:
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				cmd := command(ctx, st)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				err := cmd.Run()
				cancel()
				got := append(nonBlank(out.String()), nonBlank(errb.String())...)
				if err != nil && !(len(st.want) > 0 && strings.HasPrefix(st.want[len(st.want)-1], "herald: ")) {
					t.Fatalf("README.md:%d: %s: %v\n%s", st.line, st.cmd, err, strings.Join(got, "\n"))
				}
				if len(got) < len(st.want) && len(jobs) > 0 {
					got = append(got, bgLines(len(st.want)-len(got))...)
				}
				checkOutput(t, st, got)
			}
		}
		for _, j := range jobs {
			select {
			case <-j.exited:
			case <-time.After(10 * time.Second):
				t.Fatalf("README.md:%d: %s still runs at the end of its block\n%s", j.st.line, j.st.cmd, j.out.text())
			}
		}
	}
	t.Logf("tour of %d blocks in %s", len(blocks), time.Since(start).Round(time.Millisecond))
}

// curl runs a curl step of the tour with net/http: -d posts the data
// (curl's form content type); -N reads an SSE stream until the lines the
// README shows have arrived (at most 10 s).
func curl(t *testing.T, st tourStep, base string) []string {
	t.Helper()
	w, ok := shellWords(st.cmd)
	if !ok {
		t.Fatalf("README.md:%d: curl with shell syntax: %s", st.line, st.cmd)
	}
	var data, target string
	stream := false
	for i := 1; i < len(w); i++ {
		switch w[i] {
		case "-d":
			i++
			data = w[i]
		case "-N":
			stream = true
		default:
			target = strings.Replace(w[i], "http://127.0.0.1:8080", base, 1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	method, body := "GET", io.Reader(nil)
	if data != "" {
		method, body = "POST", strings.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if data != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("README.md:%d: %v", st.line, err)
	}
	defer resp.Body.Close()
	if !stream {
		b, _ := io.ReadAll(resp.Body)
		return nonBlank(string(b))
	}
	var got []string
	sc := bufio.NewScanner(resp.Body)
	for len(got) < len(st.want) && sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			got = append(got, sc.Text())
		}
	}
	return got
}

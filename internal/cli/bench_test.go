package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/cli"
	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

var (
	ratioLine   = regexp.MustCompile(`(?m)^([a-z0-9-]+): herald ([\d,]+) ev/s  raw ([\d,]+) ev/s  ratio ([\d.]+)x`)
	latencyLine = regexp.MustCompile(`(?m)^  latency (herald|raw) +p50 ([\d.]+)(us|ms)  p90 [\d.]+(us|ms)  p99 [\d.]+(us|ms)  p999 [\d.]+(us|ms)`)
	cpuLine     = regexp.MustCompile(`(?m)^  client cpu: herald ([\d.]+)(us|ms)/ev  raw ([\d.]+)(us|ms)/ev`)
)

func positive(t *testing.T, what, s string) {
	t.Helper()
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
	if err != nil || f <= 0 {
		t.Errorf("%s = %q, want a positive number", what, s)
	}
}

// Each mode runs for a very short time against the shared test server and
// prints a ratio line per phase with positive figures, latency percentiles
// where it measures latency, and the client CPU per event; it leaves no
// keys behind.
func TestBenchModes(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		phases  []string
		latency bool
	}{
		{"publish", []string{"publish-async", "publish-ids", "publish", "publish-batch", "publish-xadd"}, false},
		{"consume", []string{"consume", "consume-herald-entries"}, false},
		{"e2e", []string{"e2e"}, true},
		{"channel", []string{"channel", "channel-latency"}, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			ns := redistest.Namespace(t)
			r := run(t, ns, "", "bench", tc.mode, "--duration", "300ms", "--rate", "5000", "--publishers", "8", "--partitions", "4")
			if r.code != 0 {
				t.Fatalf("exit %d: %s\n%s", r.code, r.err, r.out)
			}
			t.Logf("\n%s", r.out)
			got := ratioLine.FindAllStringSubmatch(r.out, -1)
			if len(got) != len(tc.phases) {
				t.Fatalf("%d ratio lines, want %d (%v):\n%s", len(got), len(tc.phases), tc.phases, r.out)
			}
			for i, m := range got {
				if m[1] != tc.phases[i] {
					t.Errorf("phase %d is %q, want %q", i, m[1], tc.phases[i])
				}
				positive(t, m[1]+" herald", m[2])
				positive(t, m[1]+" raw", m[3])
				positive(t, m[1]+" ratio", m[4])
			}
			if cpus := cpuLine.FindAllStringSubmatch(r.out, -1); len(cpus) != len(tc.phases) {
				t.Errorf("%d client cpu lines, want %d", len(cpus), len(tc.phases))
			} else {
				for _, m := range cpus {
					positive(t, "herald cpu", m[1])
					positive(t, "raw cpu", m[3])
				}
			}
			// publish, consume and e2e run in two rounds by default (A B, B A):
			// a line of each round's ratios per phase.
			rounds := regexp.MustCompile(`(?m)^  rounds: (.+)$`).FindAllStringSubmatch(r.out, -1)
			wantRounds := 0
			if tc.mode != "channel" {
				wantRounds = len(tc.phases)
				if !strings.Contains(r.out, "per side in 2 rounds") {
					t.Errorf("the header does not say the rounds:\n%s", r.out)
				}
			}
			if len(rounds) != wantRounds {
				t.Errorf("%d rounds lines, want %d:\n%s", len(rounds), wantRounds, r.out)
			}
			for _, m := range rounds {
				if n := len(strings.Split(m[1], ", ")); n != 2 {
					t.Errorf("rounds line %q has %d rounds, want 2", m[1], n)
				}
			}
			if tc.latency {
				lat := latencyLine.FindAllStringSubmatch(r.out, -1)
				if len(lat) != 2 {
					t.Fatalf("%d latency lines, want 2 (herald, raw):\n%s", len(lat), r.out)
				}
				for _, m := range lat {
					positive(t, m[1]+" p50", m[2])
				}
			}
			if !regexp.MustCompile(`^herald bench ` + tc.mode + `: redis \d`).MatchString(r.out) {
				t.Errorf("no server facts in the header:\n%s", r.out)
			}
			// Publish phases say how many events each append carried.
			appends := regexp.MustCompile(`herald appends: [\d,]+ round trips of (\d+\.\d) events on average`).FindAllStringSubmatch(r.out, -1)
			if tc.mode == "publish" {
				if len(appends) != len(tc.phases) {
					t.Errorf("%d append lines, want %d:\n%s", len(appends), len(tc.phases), r.out)
				}
				for _, m := range appends {
					positive(t, "events per append", m[1])
				}
			} else if len(appends) != 0 {
				t.Errorf("append lines in %s:\n%s", tc.mode, r.out)
			}
			if left := keysUnder(t, ns); left != "" {
				t.Errorf("keys left after the run: %s", left)
			}
		})
	}
}

// keysUnder lists the keys of a namespace on the shared server.
func keysUnder(t *testing.T, ns string) string {
	t.Helper()
	s, err := redisproc.Command(redistest.Shared(t).Addr(), 5*time.Second,
		"EVAL", "return table.concat(redis.call('KEYS', ARGV[1]), ' ')", "0", ns+":*")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBenchJSON(t *testing.T) {
	ns := redistest.Namespace(t)
	r := run(t, ns, "", "-o", "json", "bench", "consume", "--duration", "450ms", "--rounds", "3", "--publishers", "4", "--spin-wait", "40us")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	var out struct {
		Mode   string
		Redis  struct{ Version string }
		Config struct {
			Partitions int
			SpinWait   float64 `json:"spin_wait_us"`
		}
		Phases []struct {
			Name   string
			Ratio  float64
			Herald struct {
				Events       int64
				EventsPerSec float64 `json:"events_per_sec"`
				CPU          float64 `json:"client_cpu_us_per_event"`
			}
			Raw struct {
				Events       int64
				EventsPerSec float64 `json:"events_per_sec"`
			}
			Rounds []struct {
				Ratio       float64
				Herald, Raw struct{ Events int64 }
			}
		}
	}
	if err := json.Unmarshal([]byte(r.out), &out); err != nil {
		t.Fatalf("%v: %q", err, r.out)
	}
	if out.Mode != "consume" || out.Redis.Version == "" || out.Config.Partitions != 8 || out.Config.SpinWait != 40 || len(out.Phases) != 2 ||
		out.Phases[0].Name != "consume" || out.Phases[1].Name != "consume-herald-entries" || out.Phases[1].Raw.Events != out.Phases[1].Herald.Events {
		t.Fatalf("unexpected JSON: %s", r.out)
	}
	p := out.Phases[0]
	// Three rounds, each consuming a backlog of the first round's size on
	// both sides; the phase's figures are their sums.
	if len(p.Rounds) != 3 {
		t.Fatalf("%d rounds, want 3: %s", len(p.Rounds), r.out)
	}
	var sum int64
	for i, rd := range p.Rounds {
		if rd.Herald.Events <= 0 || rd.Herald.Events != rd.Raw.Events || rd.Herald.Events != p.Rounds[0].Herald.Events || rd.Ratio <= 0 {
			t.Fatalf("round %d: %+v, want equal positive backlogs in every round: %s", i, rd, r.out)
		}
		sum += rd.Herald.Events
	}
	if sum != p.Herald.Events {
		t.Fatalf("rounds add up to %d events, the phase says %d", sum, p.Herald.Events)
	}
	if p.Ratio <= 0 || p.Herald.EventsPerSec <= 0 || p.Raw.EventsPerSec <= 0 || p.Herald.CPU <= 0 {
		t.Fatalf("non-positive figures: %s", r.out)
	}
	if p.Herald.Events != p.Raw.Events {
		t.Fatalf("herald consumed %d events, raw %d: the backlogs must match", p.Herald.Events, p.Raw.Events)
	}
}

func TestBenchBadFlagsExitTwo(t *testing.T) {
	ns := redistest.Namespace(t)
	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"no mode", "accepts 1 arg", []string{"bench"}},
		{"unknown mode", "unknown benchmark", []string{"bench", "frobnicate"}},
		{"two modes", "accepts 1 arg", []string{"bench", "publish", "consume"}},
		{"zero partitions", "--partitions 0 must be positive", []string{"bench", "publish", "--partitions", "0"}},
		{"too many partitions", "--partitions 5000 is out of range", []string{"bench", "publish", "--partitions", "5000"}},
		{"tiny size", "--size 4 bytes is out of range", []string{"bench", "e2e", "--size", "4"}},
		{"negative duration", "--duration -1s must be positive", []string{"bench", "publish", "--duration", "-1s"}},
		{"malformed duration", "invalid argument", []string{"bench", "publish", "--duration", "soon"}},
		{"zero rate", "--rate 0 must be positive", []string{"bench", "e2e", "--rate", "0"}},
		{"zero publishers", "--publishers 0 must be positive", []string{"bench", "publish", "--publishers", "0"}},
		{"unknown flag", "unknown flag", []string{"bench", "publish", "--bogus"}},
		{"malformed spin", `--spin-wait "soon" is not auto, off or a duration`, []string{"bench", "e2e", "--spin-wait", "soon"}},
		{"zero rounds", "--rounds 0 must be positive", []string{"bench", "publish", "--rounds", "0"}},
		{"too many rounds", "--rounds 101 is out of range", []string{"bench", "publish", "--rounds", "101"}},
		{"rounds too short", "leaves 40ms per round", []string{"bench", "e2e", "--duration", "200ms", "--rounds", "5"}},
		{"rounds of channel", "--rounds applies to publish, consume and e2e", []string{"bench", "channel", "--rounds", "3"}},
		{"spin too long", `--spin-wait "2ms" is not auto, off or a duration from 1us to 1ms`, []string{"bench", "e2e", "--spin-wait", "2ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runBin(t, ns, "", tc.args...)
			if r.code != 2 {
				t.Fatalf("exit code %d, want 2; stderr %q", r.code, r.err)
			}
			if !strings.Contains(r.err, tc.want) {
				t.Fatalf("stderr %q does not name the problem (%q)", r.err, tc.want)
			}
		})
	}
}

// Without --redis the command starts its own redis-server and stops it, by
// pid, before it returns.
func TestBenchManagedServerStopped(t *testing.T) {
	redistest.Skip(t)
	t.Setenv("HERALD_REDIS_URL", "")
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cli.Run(ctx, []string{"bench", "publish", "--duration", "200ms", "--publishers", "4"}, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	m := regexp.MustCompile(`started redis-server on 127\.0\.0\.1:\d+ \(pid (\d+)\)`).FindStringSubmatch(errb.String())
	if m == nil {
		t.Fatalf("no managed server reported: %q", errb.String())
	}
	if !ratioLine.MatchString(out.String()) || !strings.Contains(out.String(), "(managed, pid "+m[1]+")") {
		t.Fatalf("output:\n%s", out.String())
	}
	pid, _ := strconv.Atoi(m[1])
	redistest.WaitFor(t, 5*time.Second, "the managed redis-server to be gone", func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	})
}

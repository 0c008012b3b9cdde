package cli_test

import (
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/heraldbus/herald/internal/redistest"
)

// TestBenchGateway: a short `herald bench gateway` run (tails, then group
// sessions over two groups) prints every field the issue names, with
// nothing missing.
func TestBenchGateway(t *testing.T) {
	redistest.Skip(t)
	t.Parallel()
	for _, args := range [][]string{
		{"--clients", "20", "--topic-partitions", "4", "--rate", "20", "--duration", "1s", "--drain", "3s"},
		{"--clients", "20", "--group", "bg", "--groups", "2", "--rate", "20", "--duration", "1s", "--drain", "3s"},
	} {
		cmd := exec.Command(binary, append([]string{"bench", "gateway", "--output", "json"}, args...)...)
		cmd.Env = cleanEnv()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bench gateway %v: %v\n%s", args, err, out)
		}
		var r map[string]any
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("output %s: %v", out, err)
		}
		for _, k := range []string{"clients", "events_published", "deliveries_expected", "deliveries_missing", "latency_p50_ms",
			"latency_p99_ms", "server_rss_mb", "server_goroutines", "redis_clients"} {
			if _, ok := r[k]; !ok {
				t.Errorf("output lacks %s: %s", k, out)
			}
		}
		if r["clients"] != 20.0 || r["events_published"] != 20.0 || r["deliveries_missing"] != 0.0 {
			t.Errorf("bench gateway %v: %s", args, out)
		}
		want := 20.0 * 20
		if len(args) > 6 && args[2] == "--group" {
			want = 20 * 2
		}
		if r["deliveries_expected"] != want {
			t.Errorf("deliveries_expected %v, want %v", r["deliveries_expected"], want)
		}
	}
	bad := exec.Command(binary, "bench", "gateway", "--groups", "3")
	bad.Env = cleanEnv()
	if err := bad.Run(); err == nil {
		t.Fatal("--groups without --group was accepted")
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("--groups without --group: %v, want exit 2", err)
	}
}

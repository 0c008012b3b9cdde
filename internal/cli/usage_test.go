package cli_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldbus/herald/internal/redistest"
)

// An unknown subcommand is an error that names it and the valid ones (exit
// 2); a command group without a subcommand prints its help (exit 0).
func TestUnknownSubcommandExitsTwo(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	for group, valid := range map[string][]string{
		"dlq": {"list", "redrive", "delete"}, "topic": {"create", "info", "delete"},
		"channel": {"publish", "subscribe", "psubscribe", "numsub", "list", "numpat"},
		"group":   {"seek", "create", "delete", "info"}, "cluster": {"up", "status", "down", "failover", "kill", "restart"},
		"scheduled": {"list", "cancel"}, "route": {"test"}, "completion": {"bash", "zsh", "fish", "powershell"},
	} {
		t.Run(group, func(t *testing.T) {
			t.Parallel()
			r := runBin(t, ns, "", group, "bogus")
			if r.code != 2 || !strings.Contains(r.err, `unknown command "bogus" for "herald `+group+`"`) {
				t.Fatalf("herald %s bogus: exit %d, stderr %q", group, r.code, r.err)
			}
			for _, v := range valid {
				if !strings.Contains(r.err, v) {
					t.Errorf("herald %s bogus: stderr %q does not list %q", group, r.err, v)
				}
			}
			if r.out != "" {
				t.Errorf("herald %s bogus printed on stdout:\n%s", group, r.out)
			}
			if r := runBin(t, ns, "", group); r.code != 0 || !strings.Contains(r.out, "Available Commands:") {
				t.Fatalf("herald %s: exit %d, stdout %q", group, r.code, r.out)
			}
		})
	}
}

func TestBadInputExitsTwoBeforeOrAfterConnecting(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	if r := run(t, ns, "", "publish", "dq", "x"); r.code != 0 {
		t.Fatal(r.err)
	}
	cases := []struct {
		name, want string
		args       []string
	}{
		{"dlq group name, no redis", "group name", []string{"--redis", "redis://127.0.0.1:1", "dlq", "list", "dq", "-g", "bad{"}},
		{"dlq redrive group name", "group name", []string{"dlq", "redrive", "dq", "-g", "bad name"}},
		{"dlq delete group name", "group name", []string{"dlq", "delete", "dq", "--group", "a}"}},
		{"port out of range", "port 99999", []string{"--redis", "redis://127.0.0.1:99999", "topics"}},
		{"seed port out of range", "port 70000", []string{"--redis", "redis://127.0.0.1:6379,127.0.0.1:70000", "topics"}},
		{"port zero", "port 0", []string{"--redis", "redis://127.0.0.1:0", "groups", "dq"}},
		{"dlq id of a partition that does not exist", "partition 9 does not exist", []string{"dlq", "list", "dq", "--id", "9/1-0"}},
		{"dlq redrive id of a partition that does not exist", "partition 3 does not exist", []string{"dlq", "redrive", "dq", "--id", "3/1-0"}},
		{"dlq id outside --partition, no redis", "--partition", []string{"--redis", "redis://127.0.0.1:1", "dlq", "list", "dq", "--partition", "0", "--id", "1/1-0"}},
		{"non-ASCII topic", `has "т" at byte 0`, []string{"publish", "тема", "x"}},
		{"non-ASCII group", `has "é" at byte 1`, []string{"group", "info", "dq", "gé"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, ns, "", tc.args...)
			if r.code != 2 || !strings.Contains(r.err, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 naming %q", r.code, r.err, tc.want)
			}
		})
	}
	// The dead letter selected by --id on an existing partition: found or not, no error.
	if r := run(t, ns, "", "dlq", "list", "dq", "--id", "0/1-0"); r.code != 0 || strings.TrimSpace(r.out) != "(empty list)" {
		t.Fatalf("dlq list --id 0/1-0: %+v", r)
	}
}

// Small things: the rule file's error has one "herald:" prefix, the bench
// modes listed include delay, deleting a group that does not exist says so.
func TestMessagesNameTheProblemOnce(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	bad := filepath.Join(t.TempDir(), "badrules.yaml")
	writeFile(t, bad, "rules: [\n")
	for _, args := range [][]string{{"publish", "--rules", bad, "x"}, {"route", "test", bad, "-"}} {
		r := runBin(t, ns, "{}", args...)
		if r.code != 2 || strings.Count(r.err, "herald:") != 1 || !strings.Contains(r.err, "badrules.yaml") {
			t.Fatalf("%v: exit %d, stderr %q", args, r.code, r.err)
		}
	}
	if r := run(t, ns, "", "bench", "bogus"); r.code != 2 || !strings.Contains(r.err, "delay") {
		t.Fatalf("bench bogus: %+v", r)
	}
	if r := run(t, ns, "", "publish", "t", "x"); r.code != 0 {
		t.Fatal(r.err)
	}
	r := run(t, ns, "", "group", "delete", "t", "nosuch")
	if r.code != 1 || strings.Contains(r.out, "deleted") || !strings.Contains(r.err, `group "nosuch" does not exist`) {
		t.Fatalf("group delete of a group that does not exist: %+v", r)
	}
	if r := run(t, ns, "", "group", "create", "t", "g"); r.code != 0 {
		t.Fatal(r.err)
	}
	if r := run(t, ns, "", "group", "delete", "t", "g"); r.code != 0 || !strings.Contains(r.out, "deleted group g of t") {
		t.Fatalf("group delete: %+v", r)
	}
}

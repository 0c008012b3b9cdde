package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/redisproc"
	"github.com/heraldbus/herald/internal/redistest"
)

// runEnv runs the built binary with only env as HERALD_* environment.
func runEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
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

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"version"}} {
		r := runEnv(t, nil, args...)
		if r.code != 0 || !strings.HasPrefix(r.out, "herald ") || len(strings.TrimSpace(r.out)) <= len("herald ") {
			t.Fatalf("herald %v: %+v", args, r)
		}
	}
	r := runEnv(t, nil, "version", "-o", "json")
	var v struct{ Version, Go string }
	if err := json.Unmarshal([]byte(r.out), &v); err != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go") {
		t.Fatalf("version -o json: %q %v", r.out, err)
	}
	// Built from this checkout with VCS stamping: the revision is shown.
	bin := t.TempDir() + "/herald"
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "../../cmd/herald").CombinedOutput(); err != nil {
		t.Skipf("build with -buildvcs=true: %v\n%s", err, out) // no git here
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.Contains(string(out), "(commit ") {
		t.Fatalf("herald --version of a VCS build: %q %v", out, err)
	}
}

// The password of HERALD_REDIS_URL, --redis or HERALD_REDIS_PASSWORD never
// appears in --help, in errors or on stderr.
func TestPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	const secret = "s3cret"
	cases := []struct {
		env  []string
		args []string
		code int
	}{
		{[]string{"HERALD_REDIS_URL=redis://:s3cret@127.0.0.1:1"}, []string{"--help"}, 0},
		{[]string{"HERALD_REDIS_URL=redis://:s3cret@127.0.0.1:1"}, []string{"subscribe", "--help"}, 0},
		{[]string{"HERALD_REDIS_URL=redis://:s3cret@127.0.0.1:1"}, []string{"topics"}, 1},
		{[]string{"HERALD_REDIS_URL=redis://:s3cret@127.0.0.1:1"}, []string{"nosuchcommand"}, 2},
		{[]string{"HERALD_REDIS_URL=redis://user:s3cret@127.0.0.1:notaport"}, []string{"topics"}, 2},
		{nil, []string{"--redis", "redis://:s3cret@127.0.0.1:notaport", "topics"}, 2},
		{nil, []string{"--redis", "redis://:s3cret@127.0.0.1:1", "doctor"}, 1},
		{[]string{"HERALD_REDIS_PASSWORD=s3cret"}, []string{"--redis", "redis://127.0.0.1:notaport", "topics"}, 2},
	}
	for _, c := range cases {
		r := runEnv(t, c.env, c.args...)
		if r.code != c.code || strings.Contains(r.out+r.err, secret) {
			t.Errorf("%v %v: exit %d (want %d), password printed: %v\nstdout: %s\nstderr: %s",
				c.env, c.args, r.code, c.code, strings.Contains(r.out+r.err, secret), r.out, r.err)
		}
	}
	if r := runEnv(t, []string{"HERALD_REDIS_URL=redis://:s3cret@127.0.0.1:1"}, "--help"); !strings.Contains(r.out, "redis://:xxxxx@127.0.0.1:1") {
		t.Errorf("--help does not show the redacted URL:\n%s", r.out)
	}
}

// HERALD_REDIS_PASSWORD authenticates when the URL has no password; a
// password in the URL wins over it.
func TestRedisPasswordEnv(t *testing.T) {
	t.Parallel()
	s := redistest.Own(t, redisproc.Options{Password: "pw-right"})
	if r := runEnv(t, []string{"HERALD_REDIS_PASSWORD=pw-right"}, "--redis", s.URL(), "topics"); r.code != 0 {
		t.Fatalf("with HERALD_REDIS_PASSWORD: %+v", r)
	}
	if r := runEnv(t, []string{"HERALD_REDIS_URL=" + s.URL(), "HERALD_REDIS_PASSWORD=pw-right"}, "topics"); r.code != 0 {
		t.Fatalf("HERALD_REDIS_URL with HERALD_REDIS_PASSWORD: %+v", r)
	}
	withPw := "redis://:pw-wrong@" + s.Addr()
	r := runEnv(t, []string{"HERALD_REDIS_PASSWORD=pw-right"}, "--redis", withPw, "topics")
	if r.code == 0 || strings.Contains(r.out+r.err, "pw-wrong") || strings.Contains(r.out+r.err, "pw-right") {
		t.Fatalf("the URL's password must win (and stay hidden): %+v", r)
	}
	if r := runEnv(t, nil, "--redis", s.URL(), "topics"); r.code == 0 {
		t.Fatalf("no password: %+v", r)
	}
	// herald serve takes it too, and does not log it.
	p := startServe(t, t.TempDir(), []string{"HERALD_LISTEN=" + freeAddr(t), "HERALD_REDIS_URL=" + s.URL(),
		"HERALD_REDIS_PASSWORD=pw-right", "HERALD_LOG_LEVEL=debug"})
	resp, err := http.Get(p.url + "/v1/topics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/topics through serve with HERALD_REDIS_PASSWORD: %d", resp.StatusCode)
	}
	p.stop(t)
	if strings.Contains(p.stderr.String(), "pw-right") {
		t.Fatalf("serve logged the password:\n%s", p.stderr.String())
	}
}

// Topic and group names complete from Redis; an unreachable Redis completes
// nothing, quickly and silently.
func TestCompletion(t *testing.T) {
	t.Parallel()
	ns := redistest.Namespace(t)
	for _, args := range [][]string{{"topic", "create", "orders"}, {"topic", "create", "other"}, {"group", "create", "orders", "billing"}} {
		if r := run(t, ns, "", args...); r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	complete := func(args ...string) []string {
		r := runBin(t, ns, "", append([]string{"__complete"}, args...)...)
		if r.code != 0 {
			t.Fatalf("__complete %v: %+v", args, r)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(r.out), "\n") {
			if !strings.HasPrefix(l, ":") && l != "" {
				got = append(got, l)
			}
		}
		return got
	}
	if got := complete("subscribe", "or"); strings.Join(got, ",") != "orders" {
		t.Fatalf("topics for 'or': %v", got)
	}
	if got := complete("groups", ""); strings.Join(got, ",") != "orders,other" {
		t.Fatalf("topics: %v", got)
	}
	if got := complete("group", "delete", "orders", ""); strings.Join(got, ",") != "billing" {
		t.Fatalf("groups: %v", got)
	}
	if got := complete("subscribe", "orders", "--group", "b"); strings.Join(got, ",") != "billing" {
		t.Fatalf("--group: %v", got)
	}
	start := time.Now()
	r := runEnv(t, nil, "--redis", "redis://127.0.0.1:1", "__complete", "groups", "")
	if r.code != 0 || strings.TrimSpace(r.out) != ":4" || time.Since(start) > 5*time.Second {
		t.Fatalf("unreachable Redis: %+v after %s", r, time.Since(start))
	}
	if r := runEnv(t, nil, "completion", "bash"); r.code != 0 || !strings.Contains(r.out, "__start_herald") {
		t.Fatalf("completion bash: %d %.200s", r.code, r.out)
	}
}

// herald subscribe says on stderr when Redis goes away and when it is back,
// and goes on consuming.
func TestSubscribeReportsDisconnectAndReconnect(t *testing.T) {
	t.Parallel()
	s := redistest.Own(t, redisproc.Options{Dir: t.TempDir(), AppendOnly: true})
	ns := redistest.Namespace(t)
	url := s.URL()
	pub := func(data string) {
		t.Helper()
		cmd := exec.Command(binary, "--redis", url, "--namespace", ns, "publish", "jobs", data)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("publish: %v %s", err, out)
		}
	}
	pub("one")
	sub := startProc(t, binary, "--redis", url, "--namespace", ns, "subscribe", "jobs", "--group", "g", "--from", "beginning")
	redistest.WaitFor(t, 10*time.Second, "the first event", func() bool { return sub.has(`"one"`) })
	s.Kill()
	redistest.WaitFor(t, 15*time.Second, "the disconnect report", func() bool { return sub.has("herald: lost the connection to Redis") })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	redistest.WaitFor(t, 15*time.Second, "the reconnect report", func() bool { return sub.has("herald: reconnected to Redis after") })
	pub("two")
	redistest.WaitFor(t, 15*time.Second, "an event after the reconnect", func() bool { return sub.has(`"two"`) })
}

// A password holding '/', ' ', '@', ':' or an escape is hidden as well, in
// every URL scheme: in --help (HERALD_REDIS_URL as the default), in errors
// and in doctor's report.
func TestPasswordOfAnyCharactersNeverPrinted(t *testing.T) {
	t.Parallel()
	// The parts of a password are hidden too: url.Parse quotes the part
	// before a '/' in its error ("invalid port \":PREFIX\" after host").
	for _, pw := range []string{"PREFIX/cdSECRETX", "PREFIX cdSECRETX", "PREFIX@cdSECRETX", "PREFIX:cdSECRETX", "PREFIX%2FcdSECRETX"} {
		for _, u := range []string{"redis://:PW@127.0.0.1:1", "rediss://user:PW@127.0.0.1:1", "redis+sentinel://:PW@127.0.0.1:1/mymaster",
			"redis+cluster://:PW@127.0.0.1:1,127.0.0.1:2"} {
			u := strings.ReplaceAll(u, "PW", pw)
			t.Run(u, func(t *testing.T) {
				t.Parallel()
				for _, c := range []struct {
					env  []string
					args []string
				}{
					{[]string{"HERALD_REDIS_URL=" + u}, []string{"--help"}},
					{[]string{"HERALD_REDIS_URL=" + u}, []string{"topics"}},
					{nil, []string{"--redis", u, "topics"}},
					{nil, []string{"--redis", u, "-o", "json", "doctor"}},
				} {
					r := runEnv(t, c.env, c.args...)
					if strings.Contains(r.out+r.err, "SECRETX") || strings.Contains(r.out+r.err, "PREFIX") {
						t.Errorf("%v %v printed the password:\nstdout: %s\nstderr: %s", c.env, c.args, r.out, r.err)
					}
				}
			})
		}
	}
}

package cli

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/heraldbus/herald"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"redis://:s3cret@127.0.0.1:6379":                   "redis://:xxxxx@127.0.0.1:6379",
		"redis://user:s3cret@h:1/2":                        "redis://user:xxxxx@h:1/2",
		"rediss://u:p%40ss@h:1,h2:2":                       "rediss://u:xxxxx@h:1,h2:2",
		"redis+sentinel://:pw1@s1:26379,s2:26379/mymaster": "redis+sentinel://:xxxxx@s1:26379,s2:26379/mymaster",
		"redis://h:1?password=abc&db=1":                    "redis://h:1?password=xxxxx&db=1",
		"redis://127.0.0.1:6379":                           "redis://127.0.0.1:6379",
		"dial redis://:s3cret@h:1: refused":                "dial redis://:xxxxx@h:1: refused",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWithPassword(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, pw, want string }{
		{"redis://127.0.0.1:6379", "p w", "redis://:p%20w@127.0.0.1:6379"},
		{"redis://user@h:1/0", "pw", "redis://user:pw@h:1/0"},
		{"redis://:mine@h:1", "pw", "redis://:mine@h:1"}, // the URL's password wins
		{"redis://h:1,h2:2", "pw", "redis://:pw@h:1,h2:2"},
		{"redis://h:1", "", "redis://h:1"},
		{"", "pw", ""},
	} {
		if got := withPassword(c.in, c.pw); got != c.want {
			t.Errorf("withPassword(%q, %q) = %q, want %q", c.in, c.pw, got, c.want)
		}
	}
}

func TestRedactedErrorKeepsItsKind(t *testing.T) {
	t.Parallel()
	r := &redactor{}
	r.add("redis://:s3cret@h:1", false)
	err := r.error(&UsageError{Err: errors.Join(herald.ErrInvalid, errors.New("bad s3cret"))})
	if strings.Contains(err.Error(), "s3cret") || ExitCode(err) != 2 || !errors.Is(err, herald.ErrInvalid) {
		t.Fatalf("redacted error %q: exit %d", err, ExitCode(err))
	}
}

// FuzzRedactURL: a password put in a URL's user info never survives redaction.
func FuzzRedactURL(f *testing.F) {
	f.Add("user", "s3cret", "127.0.0.1:6379")
	f.Add("", "p@ss:w/rd", "h")
	f.Fuzz(func(t *testing.T, user, pw, host string) {
		if len(pw) < 3 || strings.ContainsAny(host, "@/?#, \t\n") || host == "" {
			return
		}
		u := "redis://" + url.UserPassword(user, pw).String() + "@" + host
		enc := strings.TrimPrefix(url.UserPassword("", pw).String(), ":")
		got := redactURL("error: " + u + " refused")
		if strings.Contains(got, ":"+enc+"@") {
			t.Fatalf("redactURL(%q) = %q", u, got)
		}
		r := &redactor{}
		r.add(u, false)
		if got := r.text("auth " + pw + " failed"); strings.Contains(got, pw) && !strings.Contains(redacted, pw) {
			t.Fatalf("redactor kept %q in %q", pw, got)
		}
	})
}

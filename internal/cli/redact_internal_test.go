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

// A password is everything between the first ':' after "scheme://" and the
// last '@' of the authority, whatever it holds: '/', ' ', '@', ':' and
// percent-escapes included, in every URL scheme, in seed lists and in text
// holding several URLs.
func TestRedactURLPasswordsOfAnyCharacters(t *testing.T) {
	t.Parallel()
	pws := []string{"ab/cdSECRETX", "ab cdSECRETX", "ab@cdSECRETX", "ab:cdSECRETX", "ab%2FcdSECRETX", "a/b c@d:e%2F@SECRETX", "a://SECRETX"}
	forms := []struct {
		in, want string
		value    bool // a URL value, as --redis and HERALD_REDIS_URL hold
	}{
		{"redis://:PW@127.0.0.1:6379", "redis://:xxxxx@127.0.0.1:6379", true},
		{"redis://user:PW@h:1/2", "redis://user:xxxxx@h:1/2", true},
		{"rediss://u:PW@h:1,h2:2", "rediss://u:xxxxx@h:1,h2:2", true},
		{"redis+sentinel://:PW@s1:26379,s2:26379/mymaster", "redis+sentinel://:xxxxx@s1:26379,s2:26379/mymaster", true},
		{"rediss+sentinel://u:PW@s1:26379/mymaster/1", "rediss+sentinel://u:xxxxx@s1:26379/mymaster/1", true},
		{"redis+cluster://:PW@h1:7001,h2:7002", "redis+cluster://:xxxxx@h1:7001,h2:7002", true},
		{"dial redis://:PW@h:1: connection refused", "dial redis://:xxxxx@h:1: connection refused", false},
		{`malformed Redis URL "redis://:PW@127.0.0.1:1": bad`, `malformed Redis URL "redis://:xxxxx@127.0.0.1:1": bad`, false},
		{"redis://:PW@h1:1 and rediss://:PW@h2:2", "redis://:xxxxx@h1:1 and rediss://:xxxxx@h2:2", false},
		{"redis://:PW@h1:1,redis://u:PW@h2:2", "redis://:xxxxx@h1:1,redis://u:xxxxx@h2:2", false},
		{"redis://h1:1 and redis://:PW@h2:2\nredis://h3:3", "redis://h1:1 and redis://:xxxxx@h2:2\nredis://h3:3", false},
	}
	for _, pw := range pws {
		for _, f := range forms {
			in := strings.ReplaceAll(f.in, "PW", pw)
			if got := redactURL(in); got != f.want {
				t.Errorf("redactURL(%q) = %q, want %q", in, got, f.want)
			}
			if !f.value {
				continue
			}
			if !hasPassword(in) {
				t.Errorf("hasPassword(%q) = false", in)
			}
			r := &redactor{}
			r.add(in, false)
			for _, text := range []string{"auth failed for " + pw, "auth failed for " + strings.ReplaceAll(pw, "%2F", "/")} {
				if got := r.text(text); strings.Contains(got, "SECRETX") {
					t.Errorf("the redactor of %q printed %q", in, got)
				}
			}
		}
	}
	// Without a password nothing changes (an '@' later in the text is not
	// taken for the end of a password).
	for _, s := range []string{"redis://h:1", "redis://user@h:1", "redis://h:1,h2:2/0", "http://127.0.0.1:8080/v1", "see redis://h:1 and mail@example.com"} {
		if got := redactURL(s); got != s {
			t.Errorf("redactURL(%q) = %q, want it unchanged", s, got)
		}
	}
}

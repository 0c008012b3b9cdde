package cli

import (
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
)

// The Redis password never reaches the terminal: URLs are printed with
// redactURL, and every error and stderr line passes through a redactor that
// knows the passwords in use (--redis, HERALD_REDIS_URL,
// HERALD_REDIS_PASSWORD, the managed redis-server's).

// redacted replaces a password in printed URLs.
const redacted = "xxxxx"

// urlPassword matches the password of a URL's user info and a password
// query parameter.
var (
	urlPassword   = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):([^@/\s]+)@`)
	queryPassword = regexp.MustCompile(`([?&]password=)([^&\s]+)`)
)

// redactURL renders a Redis URL (or any text holding URLs) with each
// password replaced: redis://user:xxxxx@host:6379.
func redactURL(s string) string {
	s = urlPassword.ReplaceAllString(s, "${1}:"+redacted+"@")
	return queryPassword.ReplaceAllString(s, "${1}"+redacted)
}

// urlPasswords returns the passwords in the URLs of s (comma-separated seeds
// included), decoded.
func urlPasswords(s string) []string {
	var out []string
	for _, m := range urlPassword.FindAllStringSubmatch(s, -1) {
		out = append(out, m[2])
		if p, err := url.PathUnescape(m[2]); err == nil && p != m[2] {
			out = append(out, p)
		}
	}
	for _, m := range queryPassword.FindAllStringSubmatch(s, -1) {
		out = append(out, m[2])
		if p, err := url.QueryUnescape(m[2]); err == nil && p != m[2] {
			out = append(out, p)
		}
	}
	return out
}

// hasPassword reports whether the first URL of u carries a password.
func hasPassword(u string) bool {
	return len(urlPasswords(u)) > 0
}

// withPassword applies pw (HERALD_REDIS_PASSWORD) to the URL u when u has
// none: the password in the URL wins. The user name is kept; comma-separated
// seeds share the first URL's credentials, so only the first is changed.
func withPassword(u, pw string) string {
	if pw == "" || hasPassword(u) {
		return u
	}
	i := strings.Index(u, "://")
	if i < 0 {
		return u
	}
	head, rest := u[:i+3], u[i+3:]
	end := strings.IndexAny(rest, "/?,")
	if end < 0 {
		end = len(rest)
	}
	user, host := "", rest[:end]
	if at := strings.LastIndex(host, "@"); at >= 0 {
		user = host[:at]
		rest = rest[at+1:]
	}
	return head + url.UserPassword(user, pw).String() + "@" + rest
}

// redactor replaces known passwords and URL passwords in text.
type redactor struct {
	mu      sync.Mutex
	secrets []string
}

// add remembers the passwords of the URLs in s (and s itself when plain is set).
func (r *redactor) add(s string, plain bool) {
	if r == nil || s == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if plain {
		r.secrets = append(r.secrets, s)
	}
	r.secrets = append(r.secrets, urlPasswords(s)...)
}

// addEnv remembers the passwords that the environment holds.
func (r *redactor) addEnv() {
	r.add(os.Getenv("HERALD_REDIS_URL"), false)
	r.add(os.Getenv("HERALD_REDIS_PASSWORD"), true)
}

func (r *redactor) text(s string) string {
	s = redactURL(s)
	if r == nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.secrets {
		// A password of one or two characters would blot out the text; the
		// URL form above still hides it where it is printed as a URL.
		if len(p) >= 3 {
			s = strings.ReplaceAll(s, p, redacted)
		}
	}
	return s
}

// redactedError is an error whose message has its passwords replaced; it
// unwraps to the original, so errors.Is and errors.As still see it.
type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func (r *redactor) error(err error) error {
	if err == nil {
		return nil
	}
	msg := r.text(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{err: err, msg: msg}
}

// redactWriter redacts each write (one message or log record per write).
type redactWriter struct {
	r *redactor
	w interface{ Write([]byte) (int, error) }
}

func (w *redactWriter) Write(p []byte) (int, error) {
	s := w.r.text(string(p))
	if _, err := w.w.Write([]byte(s)); err != nil {
		return 0, err
	}
	return len(p), nil
}

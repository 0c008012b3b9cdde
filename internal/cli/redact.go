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

// queryPassword matches a password query parameter.
var queryPassword = regexp.MustCompile(`([?&]password=)([^&\s]+)`)

// schemeStart matches the start of a URL: "scheme://".
var schemeStart = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://`)

// userinfo is the password of one URL found in a text: s[pwStart:pwEnd].
type userinfo struct{ pwStart, pwEnd int }

// urlUserinfos finds the password of every URL in s. A password is
// everything between the first ':' after "scheme://" and the '@' that ends
// the user info, whatever it holds ('/', ' ', '@', ':', escapes). That '@'
// is the last one before the next URL or the end of the line that a host
// follows. In a value (text false: --redis, HERALD_REDIS_URL) any such '@'
// counts; in a message (text true) an '@' with blanks before it counts only
// when a port follows its host, so that "see redis://h:1 or me@example.com"
// keeps its words.
func urlUserinfos(s string, text bool) []userinfo {
	var out []userinfo
	starts := urlStarts(s)
	for k, st := range starts {
		end := len(s)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		if nl := strings.IndexByte(s[st:end], '\n'); nl >= 0 {
			end = st + nl
		}
		seg := s[st:end]
		at := -1
		for i := len(seg) - 1; i >= 0 && at < 0; i-- {
			if seg[i] != '@' {
				continue
			}
			host := hostLen(seg[i+1:])
			if host == 0 {
				continue
			}
			port := i+1+host+1 < len(seg) && seg[i+1+host] == ':' && seg[i+1+host+1] >= '0' && seg[i+1+host+1] <= '9'
			if !text || port || !strings.ContainsAny(seg[:i], " \t\r") {
				at = i
			}
		}
		if at < 0 {
			continue
		}
		colon := strings.IndexByte(seg[:at], ':')
		if colon < 0 {
			continue // a user name only
		}
		out = append(out, userinfo{st + colon + 1, st + at})
	}
	return out
}

// urlStarts returns where the part after "scheme://" begins for each URL in
// s. A scheme counts where a URL can begin: at the start, or after a blank,
// a comma, a quote, a bracket or '='; "a://" inside a password does not.
func urlStarts(s string) []int {
	var out []int
	for _, m := range schemeStart.FindAllStringIndex(s, -1) {
		if m[0] > 0 && !strings.ContainsRune(" \t\r\n,;\"'`([{<=", rune(s[m[0]-1])) {
			continue
		}
		out = append(out, m[1])
	}
	return out
}

// hostLen is the length of the host name or address at the start of s.
func hostLen(s string) int {
	n := 0
	for n < len(s) {
		c := s[n]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '[' || c == ']' {
			n++
			continue
		}
		break
	}
	return n
}

// redactURL renders a Redis URL (or any text holding URLs) with each
// password replaced: redis://user:xxxxx@host:6379.
func redactURL(s string) string {
	return redactUserinfo(queryPassword.ReplaceAllString(s, "${1}"+redacted), true)
}

// redactValue is redactURL for a URL value (--redis, HERALD_REDIS_URL),
// where the last '@' before the host ends the password even after blanks.
func redactValue(s string) string {
	return redactUserinfo(queryPassword.ReplaceAllString(s, "${1}"+redacted), false)
}

func redactUserinfo(s string, text bool) string {
	var b strings.Builder
	last := 0
	for _, u := range urlUserinfos(s, text) {
		b.WriteString(s[last:u.pwStart])
		b.WriteString(redacted)
		last = u.pwEnd
	}
	b.WriteString(s[last:])
	return b.String()
}

// urlPasswords returns the passwords in the URLs of the value s (comma-
// separated seeds included), as written and decoded.
func urlPasswords(s string) []string {
	var out []string
	add := func(p string, unescape func(string) (string, error)) {
		out = append(out, p)
		if d, err := unescape(p); err == nil && d != p {
			out = append(out, d)
		}
	}
	for _, u := range urlUserinfos(s, false) {
		add(s[u.pwStart:u.pwEnd], url.PathUnescape)
	}
	for _, m := range queryPassword.FindAllStringSubmatch(s, -1) {
		add(m[2], url.QueryUnescape)
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
	for _, p := range urlPasswords(s) {
		r.secrets = append(r.secrets, p)
		// A URL that does not parse is quoted in pieces by url.Parse's
		// errors ("invalid port \":PART\" after host"): hide the pieces too.
		if parts := strings.FieldsFunc(p, func(c rune) bool { return strings.ContainsRune("/?#@: ", c) }); len(parts) > 1 {
			r.secrets = append(r.secrets, parts...)
		}
	}
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

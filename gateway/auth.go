package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// APIKey is one API key of the gateway. The key itself is never stored:
// SHA256 is the hex SHA-256 of it (printf %s "$KEY" | sha256sum). Each
// permission list holds glob patterns ('*' matches any run of characters,
// '/' included; '?' one character) of topic names, and of channels written
// "channel:NAME". A subscribe pattern may name consumer groups too, as
// "TOPICS#GROUPS" ("orders#billing-*"): only such a grant lets the key join
// a group (a group stream, a WebSocket group subscription, acks); a plain
// topic pattern allows live tails and reading stored events.
type APIKey struct {
	// Name identifies the key in logs and metrics (never the key itself).
	Name string `yaml:"name" json:"name"`
	// SHA256 is the hex SHA-256 digest of the key.
	SHA256 string `yaml:"sha256" json:"-"`
	// Publish allows POSTing events to topics and messages to channels.
	Publish []string `yaml:"publish" json:"publish,omitempty"`
	// Subscribe allows live tails (SSE, WebSocket) and reading stored
	// events of matching topics; "TOPICS#GROUPS" patterns also allow joining
	// matching consumer groups and acknowledging their events.
	Subscribe []string `yaml:"subscribe" json:"subscribe,omitempty"`
	// Admin allows the admin API on matching topics; "*" also allows the
	// server-wide endpoints (/metrics, /v1/channels, /v1/health).
	Admin []string `yaml:"admin" json:"admin,omitempty"`
}

// HashKey returns the hex SHA-256 of a key, the form APIKey.SHA256 holds.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

type action int

const (
	actPublish action = iota
	actSubscribe
	actAdmin
)

func (a action) String() string {
	return [...]string{"publish", "subscribe", "admin"}[a]
}

type principal struct {
	name  string
	hash  [32]byte
	perms [3][]string
}

// can reports whether the key may do a on resource (a topic name or
// "channel:NAME"). The topic part of a "TOPICS#GROUPS" subscribe grant
// counts for the topic.
func (p *principal) can(a action, resource string) bool {
	if p == nil {
		return true // authentication is off
	}
	for _, pat := range p.perms[a] {
		if tp, _, ok := strings.Cut(pat, "#"); ok {
			pat = tp
		}
		if globMatch(pat, resource) {
			return true
		}
	}
	return false
}

// canGroup reports whether the key may join group of topic: it needs a
// subscribe grant "TOPICS#GROUPS" matching both.
func (p *principal) canGroup(topic, group string) bool {
	if p == nil {
		return true
	}
	for _, pat := range p.perms[actSubscribe] {
		tp, gp, ok := strings.Cut(pat, "#")
		if ok && globMatch(tp, topic) && globMatch(gp, group) {
			return true
		}
	}
	return false
}

// keyName is the key's name for logs ("" when authentication is off).
func (p *principal) keyName() string {
	if p == nil {
		return ""
	}
	return p.name
}

// global reports whether the key has the admin grant "*".
func (p *principal) global() bool {
	if p == nil {
		return true
	}
	for _, pat := range p.perms[actAdmin] {
		if pat == "*" {
			return true
		}
	}
	return false
}

type keyring struct {
	keys []principal
}

func newKeyring(keys []APIKey) (*keyring, error) {
	kr := &keyring{}
	seen := map[string]bool{}
	for i, k := range keys {
		where := fmt.Sprintf("api key %d", i+1)
		if k.Name != "" {
			where = fmt.Sprintf("api key %q", k.Name)
		}
		if k.Name == "" {
			return nil, fmt.Errorf("%s has no name; give each key a name (it is what logs show)", where)
		}
		if seen[k.Name] {
			return nil, fmt.Errorf("%s: the name is used twice; give each key its own name", where)
		}
		seen[k.Name] = true
		b, err := hex.DecodeString(strings.TrimSpace(k.SHA256))
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s: sha256 must be 64 hex digits, the SHA-256 of the key (printf %%s \"$KEY\" | sha256sum)", where)
		}
		for _, pat := range k.Subscribe {
			if tp, gp, ok := strings.Cut(pat, "#"); ok && (tp == "" || gp == "" || strings.Contains(gp, "#")) {
				return nil, fmt.Errorf("%s: subscribe pattern %q: write TOPICS#GROUPS with both parts, e.g. \"orders#billing\" or \"*#*\"", where, pat)
			}
		}
		for _, pat := range append(append([]string{}, k.Publish...), k.Admin...) {
			if strings.Contains(pat, "#") {
				return nil, fmt.Errorf("%s: pattern %q: only subscribe patterns name groups (TOPICS#GROUPS)", where, pat)
			}
		}
		p := principal{name: k.Name}
		copy(p.hash[:], b)
		p.perms[actPublish], p.perms[actSubscribe], p.perms[actAdmin] = k.Publish, k.Subscribe, k.Admin
		kr.keys = append(kr.keys, p)
	}
	return kr, nil
}

// lookup finds the key whose digest matches secret. Every stored digest is
// compared in constant time, so the time taken says nothing about which
// key (if any) matched.
func (kr *keyring) lookup(secret string) *principal {
	h := sha256.Sum256([]byte(secret))
	var found *principal
	for i := range kr.keys {
		if subtle.ConstantTimeCompare(h[:], kr.keys[i].hash[:]) == 1 {
			found = &kr.keys[i]
		}
	}
	return found
}

// credential extracts the key from a request: "Authorization: Bearer KEY",
// "X-API-Key: KEY", or, for GET requests (EventSource and WebSocket clients
// cannot set headers), the access_token query parameter.
func credential(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		if k, ok := strings.CutPrefix(a, "Bearer "); ok {
			return strings.TrimSpace(k)
		}
		if k, ok := strings.CutPrefix(a, "bearer "); ok {
			return strings.TrimSpace(k)
		}
	}
	if k := r.Header.Get("X-API-Key"); k != "" {
		return k
	}
	if r.Method == http.MethodGet {
		return r.URL.Query().Get("access_token")
	}
	return ""
}

// globMatch matches s against pattern: '*' matches any run of bytes
// (including '/'), '?' one byte, everything else itself.
func globMatch(pattern, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := 0, -1
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if nextSx > 0 && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}

package gateway

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
)

// Defaults of Limits.
const (
	DefaultMaxStreams         = 20000
	DefaultMaxStreamsPerAddr  = 5000
	DefaultMaxWSSubscriptions = 100
	DefaultMaxWSInFlight      = 16
	DefaultMaxSessions        = 20000
	DefaultMaxSessionsPerKey  = 1000
	DefaultMaxGroupFeeds      = 100
)

// Limits bound what clients may hold in the gateway. A zero field takes its
// default. A stream beyond a bound is refused before it starts: 503
// (too_many_connections) when the server as a whole is full, 429 when one
// key or address holds its share; a WebSocket operation beyond a bound is
// answered with an error message of code too_many_subscriptions or
// too_many_requests. Every refusal is counted in herald_limited_total.
type Limits struct {
	// MaxStreams bounds the open streams (SSE, WebSocket, monitor) in total
	// (default 20000).
	MaxStreams int `yaml:"max_streams"`
	// MaxStreamsPerKey bounds the open streams of one API key (default:
	// MaxStreams).
	MaxStreamsPerKey int `yaml:"max_streams_per_key"`
	// MaxStreamsPerAddr bounds the open streams of one remote IP address
	// (default 5000; behind a proxy every client shares its address).
	MaxStreamsPerAddr int `yaml:"max_streams_per_addr"`
	// MaxWSSubscriptions bounds the subscriptions of one WebSocket (default 100).
	MaxWSSubscriptions int `yaml:"max_ws_subscriptions"`
	// MaxWSInFlight bounds the publish operations one WebSocket has running
	// at once (default 16).
	MaxWSInFlight int `yaml:"max_ws_in_flight"`
	// MaxSessions bounds the group sessions (SSE clients of consumer groups,
	// connected or within their resume window) in total (default 20000).
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerKey bounds the group sessions of one API key or, with
	// authentication off, of one remote IP address (default 1000): a
	// session lives sse.resume_window after its client leaves, so a client
	// that connects and disconnects in a loop fills its own share, not the
	// server's. Beyond it a new session is refused with 429.
	MaxSessionsPerKey int `yaml:"max_sessions_per_key"`
	// MaxGroupFeeds bounds the consumer groups the server consumes at once:
	// each (topic, group) with clients has one shared consumer with a fixed
	// pool of GroupFeedInFlight workers (default 100). Beyond it a
	// subscription to another group is refused with 503.
	MaxGroupFeeds int `yaml:"max_group_feeds"`
}

func (l *Limits) fill() error {
	for _, v := range []int{l.MaxStreams, l.MaxStreamsPerKey, l.MaxStreamsPerAddr, l.MaxWSSubscriptions, l.MaxWSInFlight, l.MaxSessions,
		l.MaxSessionsPerKey, l.MaxGroupFeeds} {
		if v < 0 {
			return fmt.Errorf("gateway: limits must not be negative (0 takes the default): %+v", *l)
		}
	}
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&l.MaxStreams, DefaultMaxStreams)
	def(&l.MaxStreamsPerKey, l.MaxStreams)
	def(&l.MaxStreamsPerAddr, DefaultMaxStreamsPerAddr)
	def(&l.MaxWSSubscriptions, DefaultMaxWSSubscriptions)
	def(&l.MaxWSInFlight, DefaultMaxWSInFlight)
	def(&l.MaxSessions, DefaultMaxSessions)
	def(&l.MaxSessionsPerKey, DefaultMaxSessionsPerKey)
	def(&l.MaxGroupFeeds, DefaultMaxGroupFeeds)
	return nil
}

// streamLimiter counts open streams in total, per key and per address.
type streamLimiter struct {
	mu     sync.Mutex
	total  int
	byKey  map[string]int
	byAddr map[string]int
}

func newStreamLimiter() *streamLimiter {
	return &streamLimiter{byKey: map[string]int{}, byAddr: map[string]int{}}
}

// acquire admits a stream of key from r's address, or returns the error
// to answer; release must be called once for an admitted stream.
func (g *Gateway) acquireStream(r *http.Request, key string) (release func(), err error) {
	l, lim := g.limiter, &g.cfg.Limits
	addr := remoteIP(r)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= lim.MaxStreams:
		g.metrics.limited.WithLabelValues("streams").Inc()
		return nil, errorf(http.StatusServiceUnavailable, CodeTooManyConnections,
			"the server holds %d streams, its limit (limits.max_streams); try again later or another instance", l.total)
	case key != "" && l.byKey[key] >= lim.MaxStreamsPerKey:
		g.metrics.limited.WithLabelValues("streams_per_key").Inc()
		return nil, errorf(http.StatusTooManyRequests, CodeTooManyConnections,
			"API key %q holds %d streams, its limit (limits.max_streams_per_key); close some first", key, l.byKey[key])
	case l.byAddr[addr] >= lim.MaxStreamsPerAddr:
		g.metrics.limited.WithLabelValues("streams_per_addr").Inc()
		return nil, errorf(http.StatusTooManyRequests, CodeTooManyConnections,
			"address %s holds %d streams, its limit (limits.max_streams_per_addr); close some first", addr, l.byAddr[addr])
	}
	l.total++
	l.byKey[key]++
	l.byAddr[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.byKey[key]--; l.byKey[key] == 0 {
				delete(l.byKey, key)
			}
			if l.byAddr[addr]--; l.byAddr[addr] == 0 {
				delete(l.byAddr, addr)
			}
		})
	}, nil
}

// remoteIP is the IP address of r's client (its RemoteAddr without the port).
func remoteIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// sessionQuota names whose share of limits.max_sessions_per_key a new
// group session counts in: the API key's, or, with authentication off, the
// remote address's.
func (g *Gateway) sessionQuota(r *http.Request, p *principal) string {
	if g.keys == nil {
		return "address " + remoteIP(r)
	}
	return "API key " + strconv.Quote(p.keyName())
}

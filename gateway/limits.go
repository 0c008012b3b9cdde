package gateway

import (
	"fmt"
	"net"
	"net/http"
	"sync"
)

// Defaults of Limits.
const (
	DefaultMaxStreams         = 20000
	DefaultMaxStreamsPerAddr  = 5000
	DefaultMaxWSSubscriptions = 100
	DefaultMaxWSInFlight      = 16
	DefaultMaxSessions        = 20000
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
}

func (l *Limits) fill() error {
	for _, v := range []int{l.MaxStreams, l.MaxStreamsPerKey, l.MaxStreamsPerAddr, l.MaxWSSubscriptions, l.MaxWSInFlight, l.MaxSessions} {
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
	addr := r.RemoteAddr
	if h, _, e := net.SplitHostPort(addr); e == nil {
		addr = h
	}
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

// Package gateway is Herald's HTTP face: an http.Handler with a JSON API to
// publish events (plain bodies, a JSON envelope, CloudEvents structured,
// batch and binary modes), subscribe over Server-Sent Events and WebSocket
// with resume and acknowledgements, live channels, the admin API, health,
// Prometheus metrics and an OpenAPI document; plus webhook (push)
// subscriptions. docs/http-api.md describes every endpoint.
//
// Goroutines and their owners: each streaming request (SSE, WebSocket)
// owns the goroutines it starts and ends them before it returns; a group
// session (SSE with a consumer group) owns its subscription and outlives its
// connections by Config.SSE.ResumeWindow; each webhook owns its
// subscription. Shutdown order: streams are told to end, sessions are
// stopped (unconfirmed events are handed back to the group), then webhooks
// drain (running POSTs finish and are acknowledged).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/route"
)

// Defaults used when a Config field is zero.
const (
	DefaultMaxBodyBytes     = 16 << 20
	DefaultMaxBatch         = 1000
	DefaultSSEHeartbeat     = 15 * time.Second
	DefaultSSEWindow        = 256
	MaxSSEWindow            = 10000
	DefaultResumeWindow     = 60 * time.Second
	MaxResumeWindow         = time.Hour
	DefaultStreamWriteLimit = 10 * time.Second
	DefaultWSMaxUnacked     = 256
	DefaultWSMaxMessage     = 2 << 20
	DefaultAckTimeout       = 30 * time.Second
)

// Config configures a Gateway.
type Config struct {
	// Client is the Herald client the gateway publishes and subscribes
	// with. The gateway does not close it.
	Client *herald.Client
	// Router routes POST /v1/events (optional; see route.Load).
	Router *route.Router
	// Keys are the API keys. Empty: authentication is off and every
	// request is allowed (the server logs a warning).
	Keys []APIKey
	// CORS configures cross-origin requests (off when AllowedOrigins is empty).
	CORS CORS
	// AllowedHosts, when set, are the only Host header values served (glob
	// patterns of the host name, port ignored): others get 421. The server
	// sets localhost names for a loopback listener, which stops DNS
	// rebinding (a web page whose own name resolves to 127.0.0.1).
	AllowedHosts []string
	// MaxBodyBytes bounds a request body (default 16 MiB).
	MaxBodyBytes int64
	// MaxBatch bounds the events of one publish request (default 1000).
	MaxBatch int
	// SSE configures Server-Sent Events streams.
	SSE SSEConfig
	// WebSocket configures /v1/ws.
	WebSocket WebSocketConfig
	// Limits bound the streams, sessions and WebSocket operations clients
	// may hold (see Limits; zero fields take the defaults).
	Limits Limits
	// AckTimeout is how long a consumer group's event handed to an SSE
	// session or a WebSocket group subscription waits for the client's ack
	// or nack (default 30s). An event not confirmed in time goes back to
	// the group for redelivery, as a released one does, and the client is
	// told (an ack_timeout event or error message): one client that never
	// confirms does not hold the group's delivery on this server.
	AckTimeout time.Duration
	// Webhooks are push subscriptions started by Start.
	Webhooks []Webhook
	// Instance names this gateway among the instances that share a Redis:
	// its consumers in the groups are named after it, so that instances
	// share groups (each event goes to one of them) and a restarted
	// instance finds its own pending events. Letters, digits, '.', '-', '_';
	// empty: random, unique per process.
	Instance string
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// Registry receives the gateway's metrics and is served at /metrics;
	// nil makes one with the Go and process collectors.
	Registry *prometheus.Registry
	// Ready is an extra readiness check for /readyz (the engine, say).
	Ready func(ctx context.Context) error
	// Live is an extra liveness check for /healthz (a supervised engine
	// that is down, say); it must answer at once.
	Live func(ctx context.Context) error
}

// CORS configures cross-origin resource sharing.
type CORS struct {
	// AllowedOrigins are origins allowed to call the API ("*" for any);
	// empty turns CORS off. WebSocket upgrades accept the same origins.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AllowedHeaders are extra request headers allowed besides the defaults
	// (Authorization, Content-Type, X-API-Key, Idempotency-Key, Last-Event-ID,
	// traceparent, tracestate, ce-*).
	AllowedHeaders []string `yaml:"allowed_headers"`
	// AllowCredentials sets Access-Control-Allow-Credentials.
	AllowCredentials bool `yaml:"allow_credentials"`
	// MaxAge is how long browsers may cache a preflight answer (default 10m).
	MaxAge time.Duration `yaml:"max_age"`
}

// SSEConfig configures Server-Sent Events streams.
type SSEConfig struct {
	// Heartbeat is the interval of comment lines that keep idle streams
	// open through proxies (default 15s).
	Heartbeat time.Duration `yaml:"heartbeat"`
	// Window is the default number of events a group stream sends before
	// it waits for acknowledgements (default 256; ?window= overrides it up
	// to MaxSSEWindow).
	Window int `yaml:"window"`
	// ResumeWindow is how long a group session waits for its client to
	// reconnect before it hands its unconfirmed events back to the group
	// (default 60s).
	ResumeWindow time.Duration `yaml:"resume_window"`
	// WriteTimeout bounds one write to a stream (default 10s); a client
	// that does not read for that long is disconnected.
	WriteTimeout time.Duration `yaml:"write_timeout"`
}

// WebSocketConfig configures /v1/ws.
type WebSocketConfig struct {
	// MaxUnacked is the most group deliveries a connection holds without
	// acknowledging them (default 256); a client may ask for fewer.
	MaxUnacked int `yaml:"max_unacked"`
	// MaxMessageBytes bounds one client message (default 2 MiB).
	MaxMessageBytes int64 `yaml:"max_message_bytes"`
}

func (c *Config) fill() error {
	if c.Client == nil {
		return errors.New("gateway: Config.Client is nil")
	}
	if c.Instance != "" {
		if err := herald.ValidateName("instance", c.Instance); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.SSE.Heartbeat <= 0 {
		c.SSE.Heartbeat = DefaultSSEHeartbeat
	}
	if c.SSE.Window <= 0 {
		c.SSE.Window = DefaultSSEWindow
	}
	if c.SSE.Window > MaxSSEWindow {
		return fmt.Errorf("gateway: sse window %d is too large; use at most %d", c.SSE.Window, MaxSSEWindow)
	}
	if c.SSE.ResumeWindow <= 0 {
		c.SSE.ResumeWindow = DefaultResumeWindow
	}
	if c.SSE.ResumeWindow > MaxResumeWindow {
		return fmt.Errorf("gateway: sse resume_window %s is too long; use at most %s (a session holds its unconfirmed events that long)", c.SSE.ResumeWindow, MaxResumeWindow)
	}
	if c.AckTimeout < 0 {
		return fmt.Errorf("gateway: ack_timeout %s is negative; use a positive duration (0 takes the default, %s)", c.AckTimeout, DefaultAckTimeout)
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if err := c.Limits.fill(); err != nil {
		return err
	}
	if c.SSE.WriteTimeout <= 0 {
		c.SSE.WriteTimeout = DefaultStreamWriteLimit
	}
	if c.WebSocket.MaxUnacked <= 0 {
		c.WebSocket.MaxUnacked = DefaultWSMaxUnacked
	}
	if c.WebSocket.MaxMessageBytes <= 0 {
		c.WebSocket.MaxMessageBytes = DefaultWSMaxMessage
	}
	if c.CORS.MaxAge <= 0 {
		c.CORS.MaxAge = 10 * time.Minute
	}
	return nil
}

// Gateway is the HTTP handler of `herald serve`. Create it with New, call
// Start to run the webhooks, serve it, and call Shutdown to end.
type Gateway struct {
	cfg     Config
	c       *herald.Client
	log     *slog.Logger
	keys    *keyring // nil: authentication off
	mux     *http.ServeMux
	routes  []*routeDef
	metrics *metrics

	// streamCtx is cancelled when Shutdown begins: every SSE and WebSocket
	// stream watches it.
	streamCtx    context.Context
	streamCancel context.CancelFunc
	streams      sync.WaitGroup
	closing      atomic.Bool

	sessions *sessionStore
	hub      *tailHub
	chans    *chanHub
	monitors *monHub
	limiter  *streamLimiter
	hooksMu  sync.Mutex
	hooks    []*webhookRunner
	started  bool
	shutOnce sync.Once
}

// New validates cfg and builds a Gateway.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, c: cfg.Client, log: cfg.Logger, mux: http.NewServeMux()}
	if len(cfg.Keys) > 0 {
		kr, err := newKeyring(cfg.Keys)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		g.keys = kr
	}
	for i := range cfg.Webhooks {
		if err := cfg.Webhooks[i].fill(); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(prometheusGoCollectors()...)
	}
	m, err := newMetrics(reg, g)
	if err != nil {
		return nil, err
	}
	g.metrics = m
	g.streamCtx, g.streamCancel = context.WithCancel(context.Background())
	g.sessions = newSessionStore(g)
	g.hub = newTailHub(g)
	g.chans = newChanHub(g)
	g.monitors = newMonHub(g)
	g.limiter = newStreamLimiter()
	g.registerRoutes()
	return g, nil
}

// Start starts the webhook subscriptions. ctx bounds their creation only.
func (g *Gateway) Start(ctx context.Context) error {
	g.hooksMu.Lock()
	defer g.hooksMu.Unlock()
	if g.started {
		return nil
	}
	g.started = true
	for i := range g.cfg.Webhooks {
		h, err := g.startWebhook(ctx, g.cfg.Webhooks[i])
		if err != nil {
			for _, h := range g.hooks {
				h.sub.Stop()
			}
			return err
		}
		g.hooks = append(g.hooks, h)
	}
	return nil
}

// Shutdown ends every stream (SSE clients see the end of the stream and
// reconnect elsewhere or later; WebSockets get a going-away close), hands
// the unconfirmed events of group sessions back to their groups, and
// drains the webhooks: running POSTs finish and are acknowledged. It
// returns when all is done or ctx ends. It is idempotent.
func (g *Gateway) Shutdown(ctx context.Context) error {
	var err error
	g.shutOnce.Do(func() {
		g.closing.Store(true)
		g.streamCancel()
		g.hub.close()
		g.sessions.closeAll()
		g.hooksMu.Lock()
		hooks := g.hooks
		g.hooksMu.Unlock()
		var wg sync.WaitGroup
		for _, h := range hooks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if e := h.sub.Drain(ctx); e != nil {
					g.log.Warn("webhook drain ended early; unfinished events stay pending and are redelivered", "webhook", h.cfg.Name, "err", e)
				}
			}()
		}
		done := make(chan struct{})
		go func() {
			wg.Wait()
			g.sessions.wait()
			g.streams.Wait()
			g.hub.wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	})
	return err
}

// Close is Shutdown with a 30-second bound.
func (g *Gateway) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return g.Shutdown(ctx)
}

// Registry is the registry the gateway's metrics are in.
func (g *Gateway) Registry() *prometheus.Registry { return g.metrics.reg }

// ServeHTTP serves the API.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &respWriter{ResponseWriter: w}
	routeName := "unmatched"
	r, span := g.startServerSpan(r) // tracing.go
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			g.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			if !rw.wrote {
				g.writeError(rw, r, errorf(http.StatusInternalServerError, CodeInternal, "internal error; the server logged the details"))
			}
		}
		d := time.Since(start)
		endServerSpan(span, r.Method, routeName, rw.status)
		g.metrics.observeHTTP(routeName, r.Method, rw.status, d)
		g.accessLog(r, rw, d)
	}()
	if !g.hostAllowed(r.Host) {
		routeName = "refused"
		g.writeError(rw, r, errorf(http.StatusMisdirectedRequest, CodeHostNotAllowed,
			"host %q is not served here; use http://127.0.0.1 or http://localhost, or add the name to allowed_hosts in the server config", r.Host))
		return
	}
	if g.cors(rw, r) {
		routeName = "preflight"
		return
	}
	if g.crossSite(r) {
		routeName = "refused"
		g.writeError(rw, r, errorf(http.StatusForbidden, CodeCrossOrigin,
			"a cross-site %s from origin %q is refused: a web page may not change state here; add the origin to cors.allowed_origins in the server config to allow it", r.Method, r.Header.Get("Origin")))
		return
	}
	_, pattern := g.mux.Handler(r)
	rd := g.routeByPattern(pattern)
	if rd == nil {
		if g.serveDashboard(rw, r) { // the web UI at / and /ui/ (admin_dashboard.go)
			routeName = "dashboard"
			return
		}
		g.notFound(rw, r)
		return
	}
	routeName = rd.pattern
	g.mux.ServeHTTP(rw, r) // fills PathValue and calls the route's wrapped handler
}

// respWriter records the status and whether anything was written; it
// passes Flush, Hijack and the ResponseController methods through.
type respWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	bytes  int64
	key    string // the API key's name, once authenticated
}

func (w *respWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// accessLog writes one line per request: method, path (without the query,
// which may hold access_token), status, bytes, duration, key name and
// remote address. Never a key or a body.
func (g *Gateway) accessLog(r *http.Request, rw *respWriter, d time.Duration) {
	ctx := r.Context()
	if !g.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	g.log.LogAttrs(ctx, slog.LevelInfo, "http request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", status), slog.Int64("bytes", rw.bytes), slog.Duration("duration", d),
		slog.String("key", rw.key), slog.String("remote", r.RemoteAddr))
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush flushes buffered data to the client.
func (w *respWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if !w.wrote {
			w.status, w.wrote = http.StatusOK, true
		}
		f.Flush()
	}
}

// notFound answers requests no route matched: 405 when the path exists
// with other methods, else 404.
func (g *Gateway) notFound(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, p := g.mux.Handler(r2); g.routeByPattern(p) != nil {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		g.writeError(w, r, errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			"%s is not allowed on %s; use %s (see /v1/openapi.json)", r.Method, r.URL.Path, strings.Join(allowed, " or ")))
		return
	}
	g.writeError(w, r, errorf(http.StatusNotFound, CodeNotFound,
		"no endpoint %s %s; the API is under /v1 (see /v1/openapi.json); percent-encode '/' in topic names as %%2F", r.Method, r.URL.Path))
}

// cors applies the CORS policy; it reports true when it answered a preflight.
func (g *Gateway) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || len(g.cfg.CORS.AllowedOrigins) == 0 || !g.originAllowed(origin) {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if g.cfg.CORS.AllowCredentials || !contains(g.cfg.CORS.AllowedOrigins, "*") {
		h.Set("Access-Control-Allow-Origin", origin)
	} else {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	if g.cfg.CORS.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	h.Set("Access-Control-Expose-Headers", "Herald-Client, Herald-Consumer, Location")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
		allow := []string{"Authorization", "Content-Type", "X-API-Key", "Idempotency-Key", "Last-Event-ID", "traceparent", "tracestate"}
		allow = append(allow, g.cfg.CORS.AllowedHeaders...)
		// ce-* headers of binary mode are echoed when asked for.
		for _, req := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
			if req = strings.TrimSpace(req); strings.HasPrefix(strings.ToLower(req), "ce-") {
				allow = append(allow, req)
			}
		}
		h.Set("Access-Control-Allow-Headers", strings.Join(allow, ", "))
		h.Set("Access-Control-Max-Age", fmt.Sprint(int(g.cfg.CORS.MaxAge.Seconds())))
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// hostAllowed checks the Host header against Config.AllowedHosts.
func (g *Gateway) hostAllowed(host string) bool {
	if len(g.cfg.AllowedHosts) == 0 {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	for _, pat := range g.cfg.AllowedHosts {
		if globMatch(strings.ToLower(strings.Trim(pat, "[]")), host) {
			return true
		}
	}
	return false
}

// crossSite reports a request that changes state (any method but GET,
// HEAD and OPTIONS) sent by a browser from another site whose origin CORS
// does not allow: a form or a fetch of a "simple" request (text/plain
// POST) needs no preflight, so the browser would deliver it. Requests
// without browser headers (Origin, Sec-Fetch-Site) are not from a page.
func (g *Gateway) crossSite(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	site := r.Header.Get("Sec-Fetch-Site")
	origin := r.Header.Get("Origin")
	if site == "same-origin" || site == "none" {
		return false
	}
	if origin == "" || origin == "null" {
		return site != "" || origin == "null"
	}
	if len(g.cfg.CORS.AllowedOrigins) > 0 && g.originAllowed(origin) {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

func (g *Gateway) originAllowed(origin string) bool {
	for _, o := range g.cfg.CORS.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) || (strings.Contains(o, "*") && globMatch(o, origin)) {
			return true
		}
	}
	return false
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// Package server wires the process of `herald serve`: configuration (YAML,
// HERALD_* environment variables and flags), the engine (a Redis URL, a
// managed redis-server child, or an in-process memory engine), the Herald
// client, the gateway and the http.Server, with a graceful shutdown.
//
// Shutdown order (Shutdown): the listener closes first (no new requests);
// running publish requests finish; streams are ended and the unconfirmed
// events of SSE and WebSocket subscribers are handed back to their groups;
// webhooks drain (running POSTs finish and are acknowledged); the Herald
// client closes (its last acknowledgements are flushed); the managed
// redis-server stops last, with a clean SIGTERM that flushes its AOF.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
	"github.com/heraldbus/herald/route"
)

// Server is one `herald serve` process.
type Server struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	started  bool
	shutdown bool
	done     chan struct{}
	err      error

	engine *engine
	client *herald.Client
	gw     *gateway.Gateway
	srv    *http.Server
	ln     net.Listener
}

// New returns a Server for cfg (filled and validated by Load). log may be nil.
func New(cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log, done: make(chan struct{})}
}

// Start starts the engine, connects, and listens. After it returns, Addr
// is the listening address; Run serves.
func (s *Server) Start(ctx context.Context) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil
	}
	if s.shutdown {
		return herald.ErrClosed
	}
	s.started = true
	defer func() {
		if err != nil {
			s.cleanup()
		}
	}()
	var router *route.Router
	if s.cfg.Rules != "" {
		if router, err = route.Load(s.cfg.Rules); err != nil {
			return err
		}
	}
	// Listen first: a busy address fails before anything starts, and the
	// managed redis-server's free port cannot be this one.
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	defer func() {
		if err != nil {
			ln.Close()
		}
	}()
	if s.engine, err = startEngine(ctx, s.cfg, s.log); err != nil {
		return err
	}
	s.client, err = herald.New(ctx, herald.Config{URL: s.engine.url, Namespace: s.cfg.Namespace, Logger: s.log, SpinWait: s.cfg.spinWait,
		DefaultTopic: herald.TopicConfig{Partitions: s.cfg.DefaultPartitions}})
	if err != nil {
		return fmt.Errorf("connect to Redis: %w", err)
	}
	hooks := make([]gateway.Webhook, len(s.cfg.Webhooks))
	for i, w := range s.cfg.Webhooks {
		hooks[i] = w.Webhook
	}
	instance := s.cfg.Instance
	if instance == "" {
		instance = defaultInstance(ln.Addr())
	}
	hosts := s.cfg.AllowedHosts
	if len(hosts) == 0 && Loopback(s.cfg.Listen) {
		hosts = LoopbackHosts
	}
	s.gw, err = gateway.New(gateway.Config{Client: s.client, Router: router, Keys: s.cfg.Keys, CORS: s.cfg.CORS, AllowedHosts: hosts, Instance: instance,
		MaxBodyBytes: s.cfg.MaxBodyBytes, MaxBatch: s.cfg.MaxBatch, SSE: s.cfg.SSE, WebSocket: s.cfg.WebSocket, Limits: s.cfg.Limits,
		AckTimeout: s.cfg.AckTimeout, Webhooks: hooks, Logger: s.log, Ready: s.engine.ready, Live: s.engine.live})
	if err != nil {
		return fmt.Errorf("%w: %v", herald.ErrInvalid, err)
	}
	if err := s.gw.Start(ctx); err != nil {
		return err
	}
	s.srv = &http.Server{Handler: s.gw, ReadTimeout: s.cfg.ReadTimeout, ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		WriteTimeout: s.cfg.WriteTimeout, IdleTimeout: s.cfg.IdleTimeout, MaxHeaderBytes: s.cfg.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("%w: TLS certificate: %v", herald.ErrInvalid, err)
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		ln = tls.NewListener(ln, s.srv.TLSConfig)
	}
	s.ln = ln
	if len(s.cfg.Keys) == 0 && !Loopback(s.cfg.Listen) {
		s.log.Warn("INSECURE: listening beyond loopback with no API keys: anyone who reaches the port reads and publishes every event", "listen", s.cfg.Listen)
	} else if len(s.cfg.Keys) == 0 {
		s.log.Info("no API keys: every request from this machine is allowed (loopback only)")
	}
	names := make([]string, len(s.cfg.Keys))
	for i, k := range s.cfg.Keys {
		names[i] = k.Name
	}
	s.log.Info("herald serve started", "addr", s.Addr(), "engine", s.engine.kind, "namespace", s.cfg.Namespace,
		"tls", s.cfg.TLSCert != "", "api_keys", names, "webhooks", len(hooks), "rules", s.cfg.Rules != "")
	return nil
}

// defaultInstance is the host name and the listen port, as a name.
func defaultInstance(addr net.Addr) string {
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(addr.String())
	var b strings.Builder
	for _, r := range host + "-" + port {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Addr is the address the server listens on (after Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is the base URL of the server (after Start), with 127.0.0.1 for an
// unspecified listen address.
func (s *Server) URL() string {
	host, port, _ := net.SplitHostPort(s.Addr())
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// Engine names the engine in use: external, managed or memory ("" before
// Start and after Shutdown).
func (s *Server) Engine() string {
	s.mu.Lock() // Shutdown's cleanup clears s.engine under it
	defer s.mu.Unlock()
	if s.engine == nil {
		return ""
	}
	return s.engine.kind
}

// EnginePid is the managed redis-server's pid (0 for other engines, and
// after Shutdown). It may be called while Run serves.
func (s *Server) EnginePid() int {
	s.mu.Lock()
	e := s.engine
	s.mu.Unlock()
	if e == nil {
		return 0
	}
	return e.Pid()
}

// Gateway is the HTTP handler (after Start).
func (s *Server) Gateway() *gateway.Gateway { return s.gw }

// Client is the Herald client (after Start).
func (s *Server) Client() *herald.Client { return s.client }

// Run starts the server if needed and serves until ctx ends (then shuts
// down gracefully within Config.ShutdownTimeout) or serving fails.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.srv.Serve(s.ln) }()
	var engineFatal <-chan error
	s.mu.Lock() // a concurrent Shutdown's cleanup clears s.engine
	if s.engine != nil {
		engineFatal = s.engine.fatal // nil (never ready) unless supervised
	}
	s.mu.Unlock()
	select {
	case err := <-engineFatal:
		s.log.Error("shutting down: the engine is gone", "err", err)
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		_ = s.Shutdown(sctx)
		return err
	case <-ctx.Done():
		s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		return s.Shutdown(sctx)
	case err := <-serveErr:
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		_ = s.Shutdown(sctx)
		if errors.Is(err, http.ErrServerClosed) {
			return s.err
		}
		return err
	}
}

// Shutdown stops the server gracefully (see the package comment for the
// order). It is idempotent; later calls wait for the first to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		select {
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		return s.err
	}
	s.shutdown = true
	started := s.started
	s.mu.Unlock()
	defer close(s.done)
	if !started {
		return nil
	}
	start := time.Now()
	var errs []error
	if s.srv != nil {
		httpDone := make(chan error, 1)
		go func() { httpDone <- s.srv.Shutdown(ctx) }() // closes the listener at once
		if err := s.gw.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("gateway: %w", err))
		}
		if err := <-httpDone; err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
			s.srv.Close()
		}
	}
	s.mu.Lock()
	s.cleanup()
	s.mu.Unlock()
	s.err = errors.Join(errs...)
	s.log.Info("herald serve stopped", "took", time.Since(start).Round(time.Millisecond), "err", s.err)
	return s.err
}

// cleanup closes what Start opened, in reverse order: gateway (when Start
// failed half-way), client, engine last.
func (s *Server) cleanup() {
	if s.gw != nil && !s.shutdown {
		s.gw.Close()
	}
	if s.ln != nil && s.srv == nil {
		s.ln.Close()
	}
	if s.client != nil {
		s.client.Close()
		s.client = nil
	}
	if s.engine != nil {
		if err := s.engine.stop(); err != nil {
			s.log.Warn("stopping the engine", "err", err)
		}
		s.engine = nil
	}
}

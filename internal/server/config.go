package server

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/gateway"
)

// Defaults of Config.
const (
	DefaultListen            = "127.0.0.1:8080"
	DefaultDataDir           = "./herald-data"
	DefaultReadTimeout       = 30 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// Engines: where Redis comes from when Config.Redis is empty.
const (
	EngineAuto    = "auto"    // managed when redis-server is installed, else memory
	EngineManaged = "managed" // a redis-server child with AOF in DataDir
	EngineMemory  = "memory"  // in-process miniredis: nothing survives a restart
)

// Config is the configuration of `herald serve`. Load fills it from a YAML
// file, then HERALD_* environment variables, then command-line flags, each
// overriding the one before.
type Config struct {
	// Listen is the HTTP address (default "127.0.0.1:8080", loopback only).
	// Any other address needs API keys (Keys) or Insecure.
	Listen string `yaml:"listen"`
	// Insecure allows a non-loopback Listen without API keys: anyone who
	// reaches the port reads and publishes every event.
	Insecure bool `yaml:"insecure"`
	// AllowedHosts are the Host header names served (glob patterns, port
	// ignored). Empty: on a loopback listener localhost, 127.0.0.1 and ::1
	// (against DNS rebinding); on other listeners any.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// Redis is the Redis URL; empty starts the managed engine.
	Redis string `yaml:"redis"`
	// Instance names this server among those sharing one Redis (default:
	// the host name and the listen port): consumers in groups are named
	// after it. Give each instance its own.
	Instance string `yaml:"instance"`
	// Namespace prefixes every Redis key (default "herald").
	Namespace string `yaml:"namespace"`
	// DataDir holds the managed redis-server's data (default ./herald-data).
	DataDir string `yaml:"data_dir"`
	// Engine is auto, managed or memory; used when Redis is empty.
	Engine string `yaml:"engine"`
	// ManagedPort is the loopback port of the managed redis-server (0: a free one).
	ManagedPort int `yaml:"managed_port"`
	// Rules is a routing rules file for POST /v1/events.
	Rules string `yaml:"rules"`
	// TLSCert and TLSKey serve HTTPS when both are set.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// HTTP server limits.
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`
	MaxBatch          int           `yaml:"max_batch"`
	// ShutdownTimeout bounds a graceful shutdown (default 30s).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// AckTimeout is how long an event of a consumer group, handed to an
	// SSE session or a WebSocket group subscription, waits for the
	// client's ack before it goes back to the group (default 30s; see
	// gateway.Config.AckTimeout).
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// LogLevel is debug, info, warn or error; LogFormat text or json.
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// DefaultPartitions of topics created by publishing (0: 1 on a
	// standalone Redis, 2 per master on a cluster).
	DefaultPartitions int `yaml:"default_partitions"`
	// SpinWait is herald.Config.SpinWait as herald.ParseSpinWait reads it:
	// auto (default), off, or a duration up to 1ms.
	SpinWait string        `yaml:"spin_wait"`
	spinWait time.Duration // SpinWait, parsed

	CORS      gateway.CORS            `yaml:"cors"`
	SSE       gateway.SSEConfig       `yaml:"sse"`
	WebSocket gateway.WebSocketConfig `yaml:"websocket"`
	Limits    gateway.Limits          `yaml:"limits"`
	Keys      []gateway.APIKey        `yaml:"keys"`
	Webhooks  []WebhookConfig         `yaml:"webhooks"`
}

// WebhookConfig is a webhook in the YAML file: a gateway.Webhook whose
// secret may come from an environment variable instead of the file.
type WebhookConfig struct {
	gateway.Webhook `yaml:",inline"`
	// SecretEnv names an environment variable holding the secret.
	SecretEnv string `yaml:"secret_env"`
}

// Overrides are values given on the command line; nil fields were not given.
type Overrides struct {
	Listen, Redis, Namespace, DataDir, Rules, TLSCert, TLSKey, Engine *string
	// Insecure is --insecure.
	Insecure *bool
}

// Load reads the YAML file at path (none when empty), then applies the
// environment (getenv, os.Getenv when nil) and the overrides, fills
// defaults and validates.
func Load(path string, getenv func(string) string, o Overrides) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var c Config
	if path != "" {
		src, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("%w: config file: %v", herald.ErrInvalid, err)
		}
		if err := Parse(src, &c); err != nil {
			return c, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := c.applyEnv(getenv); err != nil {
		return c, err
	}
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&c.Listen, o.Listen)
	set(&c.Redis, o.Redis)
	set(&c.Namespace, o.Namespace)
	set(&c.DataDir, o.DataDir)
	set(&c.Rules, o.Rules)
	set(&c.TLSCert, o.TLSCert)
	set(&c.TLSKey, o.TLSKey)
	set(&c.Engine, o.Engine)
	if o.Insecure != nil {
		c.Insecure = *o.Insecure
	}
	for i := range c.Webhooks {
		if w := &c.Webhooks[i]; w.SecretEnv != "" {
			w.Secret = getenv(w.SecretEnv)
			if w.Secret == "" {
				return c, fmt.Errorf("%w: webhook %q: environment variable %s (secret_env) is empty", herald.ErrInvalid, w.Name, w.SecretEnv)
			}
		}
	}
	if err := c.fill(); err != nil {
		return c, err
	}
	return c, nil
}

// Parse decodes YAML config, refusing unknown fields (with their line).
func Parse(src []byte, c *Config) error {
	d := yaml.NewDecoder(bytes.NewReader(src))
	d.KnownFields(true)
	if err := d.Decode(c); err != nil && !errors.Is(err, errEOF) {
		return fmt.Errorf("%w: %v", herald.ErrInvalid, err)
	}
	return nil
}

// Env lists the environment variables Load reads.
var Env = []string{"HERALD_LISTEN", "HERALD_REDIS_URL", "HERALD_NAMESPACE", "HERALD_DATA_DIR", "HERALD_ENGINE",
	"HERALD_RULES", "HERALD_TLS_CERT", "HERALD_TLS_KEY", "HERALD_LOG_LEVEL", "HERALD_LOG_FORMAT",
	"HERALD_SHUTDOWN_TIMEOUT", "HERALD_MANAGED_PORT", "HERALD_MAX_BODY_BYTES", "HERALD_CORS_ORIGINS", "HERALD_INSECURE", "HERALD_SPIN_WAIT"}

func (c *Config) applyEnv(getenv func(string) string) error {
	str := map[string]*string{"HERALD_LISTEN": &c.Listen, "HERALD_REDIS_URL": &c.Redis, "HERALD_NAMESPACE": &c.Namespace,
		"HERALD_DATA_DIR": &c.DataDir, "HERALD_ENGINE": &c.Engine, "HERALD_RULES": &c.Rules, "HERALD_TLS_CERT": &c.TLSCert,
		"HERALD_TLS_KEY": &c.TLSKey, "HERALD_LOG_LEVEL": &c.LogLevel, "HERALD_LOG_FORMAT": &c.LogFormat, "HERALD_SPIN_WAIT": &c.SpinWait}
	for k, dst := range str {
		if v := getenv(k); v != "" {
			*dst = v
		}
	}
	if v := getenv("HERALD_SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%w: HERALD_SHUTDOWN_TIMEOUT %q is not a duration; use e.g. 30s", herald.ErrInvalid, v)
		}
		c.ShutdownTimeout = d
	}
	if v := getenv("HERALD_MANAGED_PORT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%w: HERALD_MANAGED_PORT %q is not a port number", herald.ErrInvalid, v)
		}
		c.ManagedPort = n
	}
	if v := getenv("HERALD_MAX_BODY_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: HERALD_MAX_BODY_BYTES %q is not a number of bytes", herald.ErrInvalid, v)
		}
		c.MaxBodyBytes = n
	}
	if v := getenv("HERALD_INSECURE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%w: HERALD_INSECURE %q: use true or false", herald.ErrInvalid, v)
		}
		c.Insecure = b
	}
	if v := getenv("HERALD_CORS_ORIGINS"); v != "" {
		c.CORS.AllowedOrigins = strings.Split(v, ",")
	}
	return nil
}

// Loopback reports whether the listen address addr ("host:port") accepts
// connections from this machine only: a loopback IP or "localhost".
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoopbackHosts are the Host names a loopback listener serves by default.
var LoopbackHosts = []string{"localhost", "*.localhost", "127.0.0.1", "::1"}

func (c *Config) fill() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{herald.ErrInvalid}, args...)...)
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return bad("listen address %q: use host:port or :port, e.g. 127.0.0.1:8080 or :8080", c.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		if _, err := net.LookupPort("tcp", port); err != nil {
			return bad("listen address %q: port %q is not a number from 0 to 65535", c.Listen, port)
		}
	}
	if !Loopback(c.Listen) && len(c.Keys) == 0 && !c.Insecure {
		return bad("refusing to listen on %s without API keys: anyone who reaches it could read and publish every event. "+
			"Add a key to the config file (keys: [{name: me, sha256: <printf %%s \"$KEY\" | sha256sum>, publish: [\"*\"], subscribe: [\"*#*\"], admin: [\"*\"]}], see docs/serve.md) and pass --config FILE, "+
			"listen on 127.0.0.1:8080, or pass --insecure to accept the risk", c.Listen)
	}
	if c.Namespace == "" {
		c.Namespace = herald.DefaultNamespace
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Engine == "" {
		c.Engine = EngineAuto
	}
	switch c.Engine {
	case EngineAuto, EngineManaged, EngineMemory:
	default:
		return bad("engine %q: use auto, managed or memory", c.Engine)
	}
	if c.ManagedPort < 0 || c.ManagedPort > 65535 {
		return bad("managed_port %d: use 1-65535, or 0 for a free port", c.ManagedPort)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return bad("--tls-cert and --tls-key go together; give both or neither")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReadTimeout, DefaultReadTimeout)
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.ShutdownTimeout, DefaultShutdownTimeout)
	def(&c.AckTimeout, gateway.DefaultAckTimeout)
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return bad("log_level %q: use debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		return bad("log_format %q: use text or json", c.LogFormat)
	}
	sw, err := herald.ParseSpinWait(c.SpinWait)
	if err != nil {
		return bad("spin_wait %q: use auto, off or a duration from 1us to 1ms (e.g. 30us)", c.SpinWait)
	}
	c.spinWait = sw
	return nil
}

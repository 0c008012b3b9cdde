package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redisproc"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald/internal/server"
)

func serveCmd(e *env) *cobra.Command {
	var (
		listen, configPath, dataDir, rules, tlsCert, tlsKey, engine string
		insecure                                                    bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP gateway: publish, SSE/WebSocket subscribe, webhooks, admin, metrics",
		Long: `Run Herald's gateway for services in any language (docs/http-api.md, docs/serve.md).

Without --redis (or HERALD_REDIS_URL) it starts a managed redis-server child with AOF
persistence in --data-dir, or, when redis-server is not installed, an in-process memory
engine that keeps nothing across restarts. Configuration comes from flags, then HERALD_*
environment variables, then the YAML file of --config, in that order of precedence.
SIGTERM or SIGINT shuts down gracefully: no new requests, in-flight deliveries finished or
handed back, the managed redis-server stopped last.`,
		Example: `  herald serve
  herald serve --listen 0.0.0.0:8080 --config herald.yaml   # keys: in the file
  herald serve --redis redis://10.0.0.5:6379 --tls-cert cert.pem --tls-key key.pem`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			var o server.Overrides
			str := func(name string, v *string) *string {
				if f := cmd.Flag(name); f != nil && f.Changed {
					return v
				}
				return nil
			}
			o.Listen, o.DataDir, o.Rules = str("listen", &listen), str("data-dir", &dataDir), str("rules", &rules)
			o.TLSCert, o.TLSKey, o.Engine = str("tls-cert", &tlsCert), str("tls-key", &tlsKey), str("engine", &engine)
			o.Redis, o.Namespace = str("redis", &e.redisURL), str("namespace", &e.namespace)
			if f := cmd.Flag("insecure"); f != nil && f.Changed {
				o.Insecure = &insecure
			}
			if configPath == "" {
				configPath = getenv("HERALD_CONFIG")
			}
			cfg, err := server.Load(configPath, nil, o)
			if err != nil {
				return err
			}
			cfg.Redis = withPassword(cfg.Redis, getenv("HERALD_REDIS_PASSWORD"))         // a password in the URL wins
			log := server.WithTraceIDs(newLogger(e.io.Err, cfg.LogLevel, cfg.LogFormat)) // trace_id, span_id (server/otel.go)
			if cfg.Redis == "" && (cfg.Engine == server.EngineMemory || cfg.Engine == server.EngineAuto && !redisInstalled()) {
				fmt.Fprintln(e.io.Err, "herald: WARNING:", server.MemoryWarning)
			}
			s := server.New(cfg, log)
			if err := s.Start(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(e.io.Out, "herald serve listening on %s (engine: %s)\n", s.URL(), s.Engine())
			return s.Run(cmd.Context())
		}),
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", server.DefaultListen, "HTTP listen address (env HERALD_LISTEN)")
	f.StringVar(&configPath, "config", "", "YAML config file (env HERALD_CONFIG)")
	f.StringVar(&dataDir, "data-dir", server.DefaultDataDir, "data directory of the managed redis-server (env HERALD_DATA_DIR)")
	f.StringVar(&rules, "rules", "", "routing rules file for POST /v1/events (env HERALD_RULES)")
	f.StringVar(&tlsCert, "tls-cert", "", "TLS certificate file (PEM); serve HTTPS (env HERALD_TLS_CERT)")
	f.StringVar(&tlsKey, "tls-key", "", "TLS private key file (PEM) (env HERALD_TLS_KEY)")
	f.BoolVar(&insecure, "insecure", false, "allow a non-loopback --listen without API keys: anyone who reaches the port reads and publishes every event (env HERALD_INSECURE)")
	f.StringVar(&engine, "engine", server.EngineAuto, "without --redis: auto, managed (redis-server child) or memory (in-process, keeps nothing) (env HERALD_ENGINE)")
	return untimed(cmd) // runs until stopped: no --timeout
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func getenv(k string) string { return os.Getenv(k) }

// engineURL is the Redis URL of herald commands: --redis or
// HERALD_REDIS_URL when given; else the managed redis-server of a herald
// serve running on the data directory (HERALD_DATA_DIR or ./herald-data),
// password included; else the default URL.
func (e *env) engineURL() string {
	if e.redisURL != herald.DefaultURL || getenv("HERALD_REDIS_URL") != "" {
		return e.redisURL
	}
	dir := getenv("HERALD_DATA_DIR")
	if dir == "" {
		dir = server.DefaultDataDir
	}
	if u, ok := server.ManagedURL(dir); ok {
		return u
	}
	return e.redisURL
}

func redisInstalled() bool { return redisproc.Installed() }

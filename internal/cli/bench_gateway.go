package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald/internal/benchrun"
)

// benchGatewayCmd is `herald bench gateway` (internal/benchrun/gateway.go).
func benchGatewayCmd(e *env) *cobra.Command {
	var cfg benchrun.GatewayConfig
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Measure herald serve with many SSE clients: deliveries missing, latency, server memory and Redis connections",
		Long: `Start a herald serve child (on its own redis-server, or --redis) and --clients SSE clients in this
process: live tails, or with --group NAME group sessions (ack=auto) spread over --groups groups
NAME-0..NAME-(K-1). Publish --rate events/s through the gateway for --duration, wait for the last
deliveries, and print: clients, events_published, deliveries_expected (every client gets every
event; with --group each event once per group), deliveries_missing, latency_p50_ms and
latency_p99_ms (publish request to client), server_rss_mb (the child's), server_goroutines and
redis_clients (CLIENT LIST of the engine).`,
		Example: `  herald bench gateway --clients 10000 --topic-partitions 8 --rate 10 --duration 30s
  herald bench gateway --clients 1000 --group bench --groups 10 --output json`,
		Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the herald binary: %w", err)
			}
			cfg.Binary, cfg.Log = bin, e.io.Err
			if cmd.Flags().Changed("redis") || getenv("HERALD_REDIS_URL") != "" {
				cfg.RedisURL = e.redisURL
			}
			if cfg.Clients < 1 || cfg.TopicPartitions < 1 || cfg.Rate < 1 || cfg.Groups < 1 || cfg.Duration <= 0 {
				return usage("--clients, --topic-partitions, --rate, --groups and --duration must be positive")
			}
			if cfg.Groups > 1 && cfg.Group == "" {
				return usage("--groups needs --group NAME")
			}
			res, err := benchrun.RunGateway(cmd.Context(), cfg)
			if err != nil {
				return fmt.Errorf("bench gateway: %w", err)
			}
			if e.json() {
				e.emit(res, nil)
				return nil
			}
			res.PrintGateway(e.io.Out)
			return nil
		}),
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Clients, "clients", 1000, "SSE clients")
	f.IntVar(&cfg.TopicPartitions, "topic-partitions", 8, "partitions of the benchmark topic")
	f.IntVar(&cfg.Rate, "rate", 10, "events published per second")
	f.DurationVar(&cfg.Duration, "duration", 30e9, "publishing time")
	f.StringVar(&cfg.Group, "group", "", "clients are group sessions of this group (ack=auto) instead of live tails")
	f.IntVar(&cfg.Groups, "groups", 1, "with --group: spread the sessions over this many groups NAME-0..NAME-(K-1)")
	f.DurationVar(&cfg.Drain, "drain", 5e9, "how long to wait for the last deliveries after publishing")
	return cmd
}

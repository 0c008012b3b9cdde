package cli

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/benchrun"
	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redisproc"
)

func benchCmd(e *env) *cobra.Command {
	var cfg benchrun.Config
	var spin string
	cmd := &cobra.Command{
		Use:   "bench publish|consume|e2e|channel|delay",
		Short: "Measure Herald beside raw Redis commands (same client library, same run)",
		Long: `Measure one workload twice in the same run: through Herald, and as the plainest raw Redis
commands sent with the same client library (rueidis). Prints Herald's figure, the raw
baseline and their ratio, plus the client's CPU time per event (this process) and
redis-server's (from INFO cpu).

  publish   Publish (1 event per call) and PublishBatch (100 per call) from --publishers
            goroutines; raw: XADD pipelined 100 per round trip from as many goroutines
            (and, in the publish-xadd line, XADD 1 per call, the like-for-like baseline).
  consume   a backlog filled for --duration (events over --keys keys), consumed by one
            Subscribe with default options (ordered by key; --unordered for Unordered())
            until everything is acknowledged; raw: XREADGROUP COUNT 100 + XACK per stream.
  e2e       publish-to-handler latency at --rate events/s; raw: XADD and a XREADGROUP BLOCK
            reader per stream. Prints p50/p90/p99/p999.
  channel   live channels: Broadcast/Listen throughput, then latency at --rate;
            raw: PUBLISH and a SUBSCRIBE connection.
  delay     10,000 events published with At(due), due times spread over --duration; prints
            scheduling throughput, events early (should be 0) and lateness percentiles.

Without --redis (or HERALD_REDIS_URL) a redis-server is started on a free loopback port
for the run and stopped at the end. With --redis, the run creates a topic and raw streams
under --namespace with a unique name, and deletes them at the end.`,
		Example: `  herald bench publish
  herald bench e2e --rate 5000 --duration 10s
  herald bench consume --redis redis://127.0.0.1:6379 --output json`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: append(slices.Clone(benchrun.Modes), "delay"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			mode := args[0]
			if !slices.Contains(benchrun.Modes, mode) && mode != "delay" {
				return usage("unknown benchmark %q; use one of: %s, delay, gateway", mode, strings.Join(benchrun.Modes, ", "))
			}
			for _, f := range []struct {
				name string
				v    int64
			}{{"partitions", int64(cfg.Partitions)}, {"size", int64(cfg.Size)}, {"publishers", int64(cfg.Publishers)},
				{"rate", int64(cfg.Rate)}, {"duration", int64(cfg.Duration)}, {"rounds", int64(cfg.Rounds)}} {
				if f.v <= 0 {
					return usage("--%s %s must be positive", f.name, cmd.Flags().Lookup(f.name).Value)
				}
			}
			if cmd.Flags().Changed("rounds") && !slices.Contains(benchrun.RoundModes, mode) {
				return usage("--rounds applies to publish, consume and e2e; bench %s measures each side once", mode)
			}
			sw, err := parseSpinWait(spin)
			if err != nil {
				return err
			}
			cfg.SpinWait = sw
			if err := cfg.Fill(); err != nil {
				return usage("%v", err)
			}
			if err := cfg.ForMode(mode); err != nil {
				return usage("%v", err)
			}
			cfg.Namespace = e.namespace
			cfg.URL = e.redisURL
			where := redisHost(e.redisURL)
			if !cmd.Flags().Changed("redis") && os.Getenv("HERALD_REDIS_URL") == "" {
				srv, err := redisproc.Start(cmd.Context(), redisproc.Options{})
				if errors.Is(err, redisproc.ErrNotInstalled) {
					return fmt.Errorf("herald bench needs a Redis: install redis-server (apt-get install redis-server) or point --redis at a server")
				}
				if err != nil {
					return fmt.Errorf("start a redis-server for the benchmark: %w; or point --redis at a server", err)
				}
				defer func() { _ = srv.Stop() }() // by the pid it started
				cfg.URL = srv.URL()
				where = fmt.Sprintf("%s (managed, pid %d)", srv.Addr(), srv.Pid())
				fmt.Fprintf(e.io.Err, "herald bench: started redis-server on %s (pid %d) for this run; it is stopped at the end. Use --redis URL to measure another server.\n",
					srv.Addr(), srv.Pid())
			}
			if mode == "delay" { // internal/benchrun/delay.go
				r, err := benchrun.RunDelay(cmd.Context(), cfg)
				if err != nil {
					return fmt.Errorf("bench delay: %w", err)
				}
				if e.json() {
					e.emit(r, nil)
				} else {
					r.Print(e.io.Out, where)
				}
				return nil
			}
			res, err := benchrun.Run(cmd.Context(), mode, cfg)
			if err != nil {
				return fmt.Errorf("bench %s: %w", mode, err)
			}
			if e.json() {
				e.emit(benchJSON(res, where), nil)
				return nil
			}
			printBench(e.io.Out, res, where)
			return nil
		}),
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Partitions, "partitions", benchrun.DefaultPartitions, "partitions of the benchmark topic (and raw streams)")
	f.IntVar(&cfg.Size, "size", benchrun.DefaultSize, "payload bytes per event")
	f.IntVar(&cfg.Publishers, "publishers", benchrun.DefaultPublishers, "publishing goroutines")
	f.DurationVar(&cfg.Duration, "duration", benchrun.DefaultDuration, "measured time of each side of each phase")
	f.IntVar(&cfg.Rate, "rate", benchrun.DefaultRate, "events per second of the latency runs (e2e, channel latency)")
	f.IntVar(&cfg.Rounds, "rounds", benchrun.DefaultRounds, "publish, consume and e2e: split each side's --duration into this many rounds, run in turn (A B, then B A) so that a drift of the machine's speed falls on both sides alike")
	f.IntVar(&cfg.Keys, "keys", benchrun.DefaultKeys, "distinct event keys of the consume backlog")
	f.BoolVar(&cfg.Unordered, "unordered", false, "consume: subscribe with Unordered() (default: ordered by key, like the library)")
	f.StringVar(&spin, "spin-wait", "auto", "how long Herald's lanes and readers poll for a reply before parking: auto (30us; below 8 cores only while alone), off, or a duration up to 1ms")
	cmd.AddCommand(benchGatewayCmd(e)) // internal/cli/bench_gateway.go
	// Runs for --duration per phase: no --timeout.
	return untimed(cmd)
}

// parseSpinWait reads --spin-wait (herald.ParseSpinWait), a usage error
// when malformed.
func parseSpinWait(v string) (time.Duration, error) {
	d, err := herald.ParseSpinWait(v)
	if err != nil {
		return 0, usage("--spin-wait %q is not auto, off or a duration from 1us to %v (e.g. 30us)", v, herald.MaxSpinWait)
	}
	return d, nil
}

// redisHost shows where a URL points without its credentials.
func redisHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparsed URL)"
	}
	return u.Host
}

func printBench(w io.Writer, res benchrun.Result, where string) {
	c := res.Config
	fmt.Fprintf(w, "herald bench %s: redis %s %s at %s | client %s %s/%s, %d CPUs\n",
		res.Mode, res.RedisVersion, res.RedisMode, where, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(w, "partitions %d, payload %d B, publishers %d, %s per side", c.Partitions, c.Size, c.Publishers, c.Duration)
	if slices.Contains(benchrun.RoundModes, res.Mode) && c.Rounds > 1 {
		fmt.Fprintf(w, " in %d rounds (A B, B A, ...)", c.Rounds)
	}
	fmt.Fprintln(w)
	for _, p := range res.Phases {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%s: herald %s ev/s  raw %s ev/s  ratio %.2fx", p.Name, commas(p.Herald.PerSec()), commas(p.Raw.PerSec()), p.Ratio())
		if p.Rate > 0 {
			fmt.Fprintf(w, "  (paced at %s ev/s)", commas(float64(p.Rate)))
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "  herald: %s\n  raw:    %s\n", p.HeraldDoes, p.RawDoes)
		printRounds(w, p)
		if p.Herald.Latency != nil && p.Raw.Latency != nil {
			for _, s := range []struct {
				name string
				side benchrun.Side
			}{{"herald", p.Herald}, {"raw", p.Raw}} {
				l := s.side.Latency
				fmt.Fprintf(w, "  latency %-6s p50 %s  p90 %s  p99 %s  p999 %s  max %s  (%s of %s received)\n", s.name,
					dur(l.P50), dur(l.P90), dur(l.P99), dur(l.P999), dur(l.Max), commas(float64(s.side.Events)), commas(float64(s.side.Sent)))
			}
			h, r := p.Herald.Latency, p.Raw.Latency
			fmt.Fprintf(w, "  latency ratio (herald/raw): p50 %s  p99 %s\n", ratio(h.P50, r.P50), ratio(h.P99, r.P99))
		} else if p.Herald.Lost > 0 || p.Raw.Lost > 0 {
			fmt.Fprintf(w, "  not received: herald %s of %s, raw %s of %s\n", commas(float64(p.Herald.Lost)), commas(float64(p.Herald.Sent)),
				commas(float64(p.Raw.Lost)), commas(float64(p.Raw.Sent)))
		}
		fmt.Fprintf(w, "  client cpu: herald %s/ev  raw %s/ev   redis-server cpu: herald %s/ev  raw %s/ev\n",
			dur(p.Herald.ClientCPUPerEvent()), dur(p.Raw.ClientCPUPerEvent()), dur(p.Herald.ServerCPUPerEvent()), dur(p.Raw.ServerCPUPerEvent()))
		if p.Herald.Batches > 0 {
			fmt.Fprintf(w, "  herald appends: %s round trips of %.1f events on average\n", commas(float64(p.Herald.Batches)), p.Herald.EventsPerBatch())
		}
	}
}

// printRounds prints each round's ratio of a phase measured in rounds:
// throughput, or p50 and p99 of a latency phase.
func printRounds(w io.Writer, p benchrun.Phase) {
	if len(p.Rounds) == 0 {
		return
	}
	var b strings.Builder
	for i, r := range p.Rounds {
		if i > 0 {
			b.WriteString(", ")
		}
		if h, raw := r.Herald.Latency, r.Raw.Latency; h != nil && raw != nil {
			fmt.Fprintf(&b, "p50 %s p99 %s", ratio(h.P50, raw.P50), ratio(h.P99, raw.P99))
		} else {
			fmt.Fprintf(&b, "%.2fx", r.Ratio())
		}
	}
	fmt.Fprintf(w, "  rounds: %s\n", b.String())
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

// commas formats a non-negative rate as a whole number with thousands separators.
func commas(f float64) string {
	s := strconv.FormatInt(int64(f+0.5), 10)
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

// dur prints a short duration in µs below a millisecond, ms above.
func dur(d time.Duration) string {
	switch {
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.2fus", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fus", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
	return d.Round(time.Millisecond).String()
}

func benchJSON(res benchrun.Result, where string) map[string]any {
	c := res.Config
	phases := make([]map[string]any, len(res.Phases))
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	side := func(s benchrun.Side, does string) map[string]any {
		m := map[string]any{"does": does, "events": s.Events, "elapsed_ms": float64(s.Elapsed) / 1e6,
			"events_per_sec": s.PerSec(), "client_cpu_us_per_event": us(s.ClientCPUPerEvent()),
			"server_cpu_us_per_event": us(s.ServerCPUPerEvent())}
		if s.Sent > 0 {
			m["sent"], m["lost"] = s.Sent, s.Lost
		}
		if s.Batches > 0 {
			m["batches"], m["events_per_batch"] = s.Batches, s.EventsPerBatch()
		}
		if l := s.Latency; l != nil {
			m["latency_us"] = map[string]any{"p50": us(l.P50), "p90": us(l.P90), "p99": us(l.P99), "p999": us(l.P999),
				"max": us(l.Max), "samples": l.Samples}
		}
		return m
	}
	for i, p := range res.Phases {
		phases[i] = map[string]any{"name": p.Name, "ratio": p.Ratio(), "herald": side(p.Herald, p.HeraldDoes), "raw": side(p.Raw, p.RawDoes)}
		if p.Rate > 0 {
			phases[i]["rate"] = p.Rate
		}
		if len(p.Rounds) > 0 {
			rounds := make([]map[string]any, len(p.Rounds))
			for j, r := range p.Rounds {
				rounds[j] = map[string]any{"ratio": r.Ratio(), "herald": side(r.Herald, ""), "raw": side(r.Raw, "")}
				delete(rounds[j]["herald"].(map[string]any), "does")
				delete(rounds[j]["raw"].(map[string]any), "does")
			}
			phases[i]["rounds"] = rounds
		}
	}
	return map[string]any{
		"mode":   res.Mode,
		"redis":  map[string]any{"version": res.RedisVersion, "mode": res.RedisMode, "nodes": res.RedisNodes, "at": where},
		"client": map[string]any{"go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH, "cpus": runtime.NumCPU()},
		"config": map[string]any{"partitions": c.Partitions, "size": c.Size, "publishers": c.Publishers,
			"duration_ms": c.Duration.Milliseconds(), "rounds": c.Rounds, "rate": c.Rate, "keys": c.Keys, "unordered": c.Unordered,
			"spin_wait_us": float64(rdb.SpinFor(c.SpinWait).Wait) / 1e3, "spin": rdb.SpinFor(c.SpinWait).String()},
		"phases": phases,
	}
}

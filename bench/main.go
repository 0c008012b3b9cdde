// Command bench measures Herald beside two peer libraries that also put
// events on Redis, Watermill's Redis Streams Pub/Sub and asynq, against one
// redis-server that it starts on a free loopback port and stops at the end.
//
// Every library gets the same 100-byte payloads and runs in alternating
// rounds (Herald, Watermill, asynq, Herald, ...), each measurement on a
// freshly flushed server:
//
//   - publish with 1 and with 16 goroutines, one event per call, for -duration;
//   - consume a pre-filled backlog with one subscriber or worker pool, timed
//     until Redis shows every event acknowledged (Herald, Watermill) or
//     completed (asynq).
//
// It prints one markdown table of medians with the ratios Herald / peer,
// then the CPU per event of the client process and of redis-server.
//
//	cd bench && go run . -rounds 3
//
// This is its own module so that the main module never depends on the peers.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

type options struct {
	rounds       int
	duration     time.Duration
	size         int
	partitions   int
	heraldEvents int
	peerEvents   int
	asynqWorkers int
	redisServer  string
	timeout      time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every library once, in turn")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "length of each publish measurement")
	flag.IntVar(&o.size, "size", 100, "payload bytes per event")
	flag.IntVar(&o.partitions, "partitions", 8, "partitions of Herald's topic")
	flag.IntVar(&o.heraldEvents, "herald-events", 300000, "backlog consumed by Herald per round")
	flag.IntVar(&o.peerEvents, "peer-events", 40000, "backlog consumed by Watermill and asynq per round (they are ~20x slower)")
	flag.IntVar(&o.asynqWorkers, "asynq-concurrency", 8, "asynq worker goroutines (Herald's default handler count)")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary to start")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "bound on one consume measurement")
	flag.Parse()
	if o.rounds < 1 || o.duration <= 0 || o.size < 1 || o.partitions < 1 || o.heraldEvents < 1 || o.peerEvents < 1 || o.asynqWorkers < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds, -duration, -size, -partitions, -herald-events, -peer-events and -asynq-concurrency must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// workload names, in table order.
var workloads = []string{"publish, 1 goroutine", "publish, 16 goroutines", "publish, 16 goroutines, 100 per call", "publish, 16 goroutines, async", "consume backlog, acked"}

// sample is one measurement.
type sample struct {
	events    int64
	elapsed   time.Duration
	clientCPU time.Duration
	serverCPU time.Duration
}

func (s sample) perSec() float64 { return float64(s.events) / s.elapsed.Seconds() }

func run(ctx context.Context, o options, out, log io.Writer) error {
	srv, err := startRedis(ctx, o.redisServer)
	if err != nil {
		return err
	}
	defer srv.stop() // by the pid we started
	fmt.Fprintf(log, "redis-server %s on %s (pid %d); %s %s/%s, %d CPUs\n", srv.version, srv.addr, srv.pid(),
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	admin := redis.NewClient(&redis.Options{Addr: srv.addr})
	defer admin.Close()

	payload := make([]byte, o.size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	libs := []library{
		&heraldLib{url: "redis://" + srv.addr, partitions: o.partitions, payload: payload},
		&watermillLib{addr: srv.addr, payload: payload},
		&asynqLib{addr: srv.addr, payload: payload, concurrency: o.asynqWorkers},
	}
	results := map[string]map[string][]sample{} // library -> workload -> rounds
	for _, l := range libs {
		results[l.name()] = map[string][]sample{}
	}
	start := time.Now()
	for round := 1; round <= o.rounds; round++ {
		for _, l := range libs {
			for _, wl := range workloads {
				if err := admin.FlushAll(ctx).Err(); err != nil {
					return fmt.Errorf("FLUSHALL: %w", err)
				}
				var s sample
				var err error
				switch wl {
				case workloads[0]:
					s, err = measurePublish(ctx, srv, l, 1, o.duration, "")
				case workloads[1]:
					s, err = measurePublish(ctx, srv, l, 16, o.duration, "")
				case workloads[2]:
					s, err = measurePublish(ctx, srv, l, 16, o.duration, "batch")
				case workloads[3]:
					s, err = measurePublish(ctx, srv, l, 16, o.duration, "async")
				default:
					n := o.peerEvents
					if l.name() == "Herald" {
						n = o.heraldEvents
					}
					s, err = measureConsume(ctx, srv, l, n, o.timeout)
				}
				if err != nil {
					return fmt.Errorf("round %d, %s, %s: %w", round, l.name(), wl, err)
				}
				results[l.name()][wl] = append(results[l.name()][wl], s)
				fmt.Fprintf(log, "round %d  %-9s  %-24s %9.0f ev/s  (%d events in %s)\n", round, l.name(), wl, s.perSec(), s.events, s.elapsed.Round(time.Millisecond))
			}
		}
	}
	_ = admin.FlushAll(ctx).Err()
	fmt.Fprintf(log, "done in %s\n\n", time.Since(start).Round(time.Second))
	printTables(out, o, srv, libs, results)
	return nil
}

// measurePublish publishes from g goroutines for d and checks that Redis
// holds what was counted.
func measurePublish(ctx context.Context, srv *redisServer, l library, g int, d time.Duration, mode string) (sample, error) {
	var worker func() (func(ctx context.Context) (int, error), func(ctx context.Context) error)
	var closeFn func(ctx context.Context) error
	var stored func(ctx context.Context) (int64, error)
	var err error
	supported := false
	if fp, ok := l.(fastPublisher); ok && mode != "" {
		worker, stored, closeFn, supported, err = fp.fastPublisher(ctx, mode)
		if err != nil {
			return sample{}, err
		}
	}
	if !supported {
		var one func(ctx context.Context) error
		var closeOne func()
		one, stored, closeOne, err = l.publisher(ctx)
		worker = func() (func(ctx context.Context) (int, error), func(ctx context.Context) error) {
			return func(ctx context.Context) (int, error) { return 1, one(ctx) }, func(context.Context) error { return nil }
		}
		closeFn = func(context.Context) error { closeOne(); return nil }
	}
	if err != nil {
		return sample{}, err
	}
	defer func() { _ = closeFn(ctx) }()
	var n atomic.Int64
	m := startMeter(srv)
	deadline := m.start.Add(d)
	err = parallelWorkers(ctx, g, func(ctx context.Context) error {
		publish, flush := worker()
		for time.Now().Before(deadline) && ctx.Err() == nil {
			k, err := publish(ctx)
			if err != nil {
				return err
			}
			n.Add(int64(k))
		}
		return flush(ctx) // what was sent is stored before the clock stops
	})
	if err != nil && ctx.Err() == nil {
		return sample{}, err
	}
	if ctx.Err() != nil {
		return sample{}, ctx.Err()
	}
	s := m.stop(n.Load())
	got, err := stored(ctx)
	if err != nil {
		return sample{}, fmt.Errorf("count stored events: %w", err)
	}
	if got != s.events {
		return sample{}, fmt.Errorf("counted %d published events but Redis holds %d", s.events, got)
	}
	return s, nil
}

// measureConsume fills a backlog of n events (not measured), then times the
// consumer from its start until every event is acknowledged in Redis.
func measureConsume(ctx context.Context, srv *redisServer, l library, n int, timeout time.Duration) (sample, error) {
	if err := l.fill(ctx, n); err != nil {
		return sample{}, fmt.Errorf("fill %d events: %w", n, err)
	}
	m := startMeter(srv)
	wait, closeFn, err := l.consume(ctx, n)
	if err != nil {
		return sample{}, err
	}
	defer closeFn()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := wait(wctx); err != nil {
		return sample{}, err
	}
	return m.stop(int64(n)), nil
}

type meter struct {
	srv    *redisServer
	start  time.Time
	cpu    time.Duration
	server time.Duration
}

func startMeter(srv *redisServer) *meter {
	return &meter{srv: srv, server: srv.cpu(), cpu: processCPU(), start: time.Now()}
}

func (m *meter) stop(events int64) sample {
	s := sample{events: events, elapsed: time.Since(m.start), clientCPU: processCPU() - m.cpu}
	s.serverCPU = m.srv.cpu() - m.server
	return s
}

// processCPU is this process's CPU time (user + system).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func printTables(w io.Writer, o options, srv *redisServer, libs []library, results map[string]map[string][]sample) {
	fmt.Fprintf(w, "redis-server %s on loopback, %s %s/%s, %d CPUs; %d rounds, median (min-max) events/s; payload %d B; Herald topic of %d partitions\n\n",
		srv.version, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), o.rounds, o.size, o.partitions)
	names := make([]string, len(libs))
	for i, l := range libs {
		names[i] = l.name()
	}
	header := []string{"workload"}
	header = append(header, names...)
	for _, n := range names[1:] {
		header = append(header, names[0]+" / "+n)
	}
	row := func(cells []string) { fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | ")) }
	row(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---:"
	}
	sep[0] = "---"
	row(sep)
	rate := func(lib, wl string) (med, lo, hi float64) {
		var xs []float64
		for _, s := range results[lib][wl] {
			xs = append(xs, s.perSec())
		}
		return median(xs), slices.Min(xs), slices.Max(xs)
	}
	for _, wl := range workloads {
		cells := []string{wl}
		meds := make([]float64, len(names))
		for i, n := range names {
			med, lo, hi := rate(n, wl)
			meds[i] = med
			cells = append(cells, fmt.Sprintf("%s (%s-%s)", human(med), human(lo), human(hi)))
		}
		for i := 1; i < len(names); i++ {
			cells = append(cells, fmt.Sprintf("%.1fx", meds[0]/meds[i]))
		}
		row(cells)
	}

	fmt.Fprintf(w, "\nCPU per event, median: client process / redis-server (us)\n\n")
	row(append([]string{"workload"}, names...))
	row(append([]string{"---"}, slices.Repeat([]string{"---:"}, len(names))...))
	for _, wl := range workloads {
		cells := []string{wl}
		for _, n := range names {
			var c, s []float64
			for _, x := range results[n][wl] {
				c = append(c, float64(x.clientCPU.Microseconds())/float64(x.events))
				s = append(s, float64(x.serverCPU.Microseconds())/float64(x.events))
			}
			cells = append(cells, fmt.Sprintf("%.1f / %.1f", median(c), median(s)))
		}
		row(cells)
	}
	fmt.Fprintf(w, "\nHerald: Publish per event (coalesced into batches); 100 per call: PublishBatch; async: PublishAsync, up to %d unsettled events per goroutine, all settled before the clock stops; Subscribe with defaults (8 handlers, %d partitions).\n", asyncWindow, o.partitions)
	fmt.Fprintf(w, "Watermill: redisstream Publisher.Publish per message; 100 per call: Publish of %d messages; async: none, Publish per message again; one Subscriber in a consumer group (reads COUNT 1, XACK per message).\n", peerBatch)
	fmt.Fprintf(w, "asynq: Client.Enqueue per task in every publish line (it has no batch or asynchronous enqueue); Server with Concurrency %d on one queue.\n", o.asynqWorkers)
	fmt.Fprintf(w, "Consume backlogs: Herald %d events, Watermill and asynq %d each, per round.\n", o.heraldEvents, o.peerEvents)
}

// human formats a rate as 12,345 or 1.23M.
func human(f float64) string {
	if f >= 1e6 {
		return fmt.Sprintf("%.2fM", f/1e6)
	}
	s := fmt.Sprintf("%.0f", f)
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

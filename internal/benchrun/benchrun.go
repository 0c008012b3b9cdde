// Package benchrun measures Herald beside raw Redis commands sent through the
// same client library (rueidis) in the same run: the engine of `herald
// bench`. Each Run function drives one workload and returns a Result of
// plain numbers; formatting is the caller's business.
//
// Every figure is taken on the machine that runs it, with the client and
// (usually) redis-server sharing its cores, so it says how Herald compares
// with the raw commands here, not what another machine will do.
package benchrun

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/rdb"
)

// Defaults of Config fields left zero.
const (
	DefaultPartitions = 8
	DefaultSize       = 100
	DefaultPublishers = 16
	DefaultDuration   = 5 * time.Second
	DefaultRate       = 20000
	DefaultKeys       = 1000    // distinct keys of the consume backlog
	MaxKeys           = 1000000 // most distinct keys
	// MinSize is the smallest payload: latency runs carry a timestamp in
	// the first 8 bytes.
	MinSize = 8
	// MaxSize bounds the payload (Herald's default event size limit).
	MaxSize = herald.DefaultMaxEventBytes - 1024
	// MaxDuration bounds one measured phase.
	MaxDuration = 10 * time.Minute
	// MaxRate bounds the paced rate of e2e and channel latency runs.
	MaxRate = 1000000
	// MaxPublishers bounds the publishing goroutines.
	MaxPublishers = 4096
	// DefaultRounds is how many rounds publish, consume and e2e split each side's
	// measured time into (Config.Rounds).
	DefaultRounds = 2
	// MaxRounds bounds Config.Rounds.
	MaxRounds = 100
	// MinRoundTime is the shortest measured time of one side in one round.
	MinRoundTime = 50 * time.Millisecond
)

// Modes lists the workloads Run accepts.
var Modes = []string{"publish", "consume", "e2e", "channel"}

// RoundModes lists the modes measured in Config.Rounds rounds.
var RoundModes = []string{"publish", "consume", "e2e"}

// Config describes one benchmark run. Zero fields take the defaults above.
type Config struct {
	// URL of the Redis to measure against.
	URL string
	// Namespace prefixes every key; the run's topics and raw keys get a
	// unique run id under it and are deleted at the end.
	Namespace string
	// Partitions of the benchmark topic (and number of raw streams).
	Partitions int
	// Size of each event's payload in bytes.
	Size int
	// Publishers is the number of publishing goroutines.
	Publishers int
	// Duration of each measured phase.
	Duration time.Duration
	// Rate in events per second of the paced latency runs (e2e, channel).
	Rate int
	// Keys is the number of distinct event keys of the consume backlog
	// (default DefaultKeys); Unordered subscribes with herald.Unordered.
	Keys      int
	Unordered bool
	// Rounds splits each side's measured time of the publish, consume and
	// e2e modes into this many rounds of Duration/Rounds (default
	// DefaultRounds). The sides run in turn, forward in even rounds and
	// backward in odd ones (A B, then B A), so that a drift of the
	// machine's speed during the run (a CPU's boost fading, a neighbour's
	// load) falls on Herald and on the raw baseline alike. The other modes
	// measure each side once.
	Rounds int
	// SpinWait is herald.Config.SpinWait of the Herald side (0: picked by
	// the cores). The raw side's connections never spin: it is rueidis
	// as it comes.
	SpinWait time.Duration
}

// Fill sets defaults and checks the ranges; errors name the `herald bench`
// flag to fix.
func (c *Config) Fill() error {
	if c.Namespace == "" {
		c.Namespace = herald.DefaultNamespace
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Partitions, DefaultPartitions)
	def(&c.Size, DefaultSize)
	def(&c.Publishers, DefaultPublishers)
	def(&c.Rate, DefaultRate)
	def(&c.Keys, DefaultKeys)
	def(&c.Rounds, DefaultRounds)
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	switch {
	case c.Partitions < 1 || c.Partitions > herald.MaxPartitions:
		return fmt.Errorf("--partitions %d is out of range; use 1..%d", c.Partitions, herald.MaxPartitions)
	case c.Size < MinSize || c.Size > MaxSize:
		return fmt.Errorf("--size %d bytes is out of range; use %d..%d", c.Size, MinSize, MaxSize)
	case c.Publishers < 1 || c.Publishers > MaxPublishers:
		return fmt.Errorf("--publishers %d is out of range; use 1..%d", c.Publishers, MaxPublishers)
	case c.Duration < 0 || c.Duration > MaxDuration:
		return fmt.Errorf("--duration %s is out of range; use a positive duration up to %s", c.Duration, MaxDuration)
	case c.Rate < 1 || c.Rate > MaxRate:
		return fmt.Errorf("--rate %d events/s is out of range; use 1..%d", c.Rate, MaxRate)
	case c.Keys < 1 || c.Keys > MaxKeys:
		return fmt.Errorf("--keys %d is out of range; use 1..%d", c.Keys, MaxKeys)
	case c.Rounds < 1 || c.Rounds > MaxRounds:
		return fmt.Errorf("--rounds %d is out of range; use 1..%d", c.Rounds, MaxRounds)
	}
	return nil
}

// ForMode fits a filled Config to mode: a mode of RoundModes must leave
// each round at least MinRoundTime; the others measure each side once
// (Rounds becomes 1). Errors name the `herald bench` flags to fix.
func (c *Config) ForMode(mode string) error {
	if !slices.Contains(RoundModes, mode) {
		c.Rounds = 1
		return nil
	}
	if per := c.Duration / time.Duration(c.Rounds); per < MinRoundTime {
		return fmt.Errorf("--duration %s over --rounds %d leaves %s per round; give each round at least %s (a longer --duration or fewer --rounds)",
			c.Duration, c.Rounds, per, MinRoundTime)
	}
	return nil
}

// Result is one run: a header of facts and one or more measured phases.
type Result struct {
	Mode   string
	Config Config
	// RedisVersion, RedisMode and RedisNodes describe the server measured.
	RedisVersion string
	RedisMode    string
	RedisNodes   int
	Phases       []Phase
}

// Phase is one workload measured for Herald and for its raw baseline.
type Phase struct {
	// Name is what the phase measures, e.g. "publish" or "channel-latency".
	Name string
	// Herald and Raw are the two measurements; HeraldDoes and RawDoes say
	// in a few words what each side sent.
	Herald, Raw         Side
	HeraldDoes, RawDoes string
	// Rate is the paced rate of a latency phase (0 for throughput phases).
	Rate int
	// Rounds holds each round's two sides when the phase was measured in
	// more than one round (Config.Rounds); Herald and Raw are their sums.
	Rounds []RoundSides
}

// Ratio is Herald's throughput over the raw baseline's (1 = as fast).
func (p Phase) Ratio() float64 {
	if p.Raw.PerSec() == 0 {
		return 0
	}
	return p.Herald.PerSec() / p.Raw.PerSec()
}

// Side is the measurement of one side of a phase.
type Side struct {
	// Events counted: published (publish), acknowledged (consume), or
	// received (e2e and channel).
	Events int64
	// Elapsed is the measured wall time.
	Elapsed time.Duration
	// ClientCPU is this process's CPU time (user+system) during the phase.
	ClientCPU time.Duration
	// ServerCPU is the CPU time redis-server used during the phase (every
	// node of a cluster; it includes whatever else the server did).
	ServerCPU time.Duration
	// Sent and Lost count events of latency phases: published, and
	// published but not received before the wait ended.
	Sent, Lost int64
	// Latency percentiles of latency phases; nil otherwise.
	Latency *Latency
	// Batches is how many appends the Herald side of a publish phase sent
	// (its AppendDuration observations; 0 elsewhere): Events / Batches is
	// how many events Redis got per round trip of a lane.
	Batches uint64

	lat []time.Duration // the latency samples, sorted, for sumSides
}

// EventsPerBatch is Events / Batches, 0 without batches.
func (s Side) EventsPerBatch() float64 {
	if s.Batches == 0 {
		return 0
	}
	return float64(s.Events) / float64(s.Batches)
}

// PerSec is the throughput in events per second.
func (s Side) PerSec() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Events) / s.Elapsed.Seconds()
}

// ClientCPUPerEvent is the client's CPU time per event.
func (s Side) ClientCPUPerEvent() time.Duration { return perEvent(s.ClientCPU, s.Events) }

// ServerCPUPerEvent is redis-server's CPU time per event.
func (s Side) ServerCPUPerEvent() time.Duration { return perEvent(s.ServerCPU, s.Events) }

func perEvent(d time.Duration, n int64) time.Duration {
	if n <= 0 {
		return 0
	}
	return d / time.Duration(n)
}

// Latency holds publish-to-receive latency percentiles.
type Latency struct {
	P50, P90, P99, P999, Max time.Duration
	Samples                  int
}

// Run runs one mode ("publish", "consume", "e2e" or "channel").
func Run(ctx context.Context, mode string, cfg Config) (Result, error) {
	switch mode {
	case "publish":
		return RunPublish(ctx, cfg)
	case "consume":
		return RunConsume(ctx, cfg)
	case "e2e":
		return RunE2E(ctx, cfg)
	case "channel":
		return RunChannel(ctx, cfg)
	}
	return Result{}, fmt.Errorf("unknown benchmark mode %q; use one of %s", mode, strings.Join(Modes, ", "))
}

// bench is the state of one run: a Herald client and a raw connection to
// the same Redis, both opened with the same options.
type bench struct {
	cfg     Config
	span    time.Duration // measured time of one side in one round
	c       *herald.Client
	db      *rdb.DB
	id      string
	payload []byte

	cleanMu sync.Mutex
	topics  []string
	keys    []string
}

func open(ctx context.Context, mode string, cfg Config) (*bench, Result, error) {
	if err := cfg.Fill(); err != nil {
		return nil, Result{}, err
	}
	if err := cfg.ForMode(mode); err != nil {
		return nil, Result{}, err
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	id := "bench-" + hex.EncodeToString(rnd[:])
	c, err := herald.New(ctx, herald.Config{URL: cfg.URL, Namespace: cfg.Namespace, ProducerID: id, SpinWait: cfg.SpinWait})
	if err != nil {
		return nil, Result{}, err
	}
	db, err := rdb.Open(ctx, rdb.Options{URL: cfg.URL, Namespace: cfg.Namespace, SpinWait: -1})
	if err != nil {
		c.Close()
		return nil, Result{}, err
	}
	bn := &bench{cfg: cfg, span: cfg.Duration, c: c, db: db, id: id, payload: make([]byte, cfg.Size)}
	for i := range bn.payload {
		bn.payload[i] = 'a' + byte(i%26)
	}
	if slices.Contains(RoundModes, mode) {
		bn.span = cfg.Duration / time.Duration(cfg.Rounds)
	}
	res := Result{Mode: mode, Config: cfg}
	info, err := db.ServerInfo(ctx)
	if err != nil {
		bn.close()
		return nil, Result{}, fmt.Errorf("read INFO of the Redis server: %w", err)
	}
	res.RedisVersion, res.RedisMode, res.RedisNodes = info.Version, info.Mode, info.Nodes
	return bn, res, nil
}

// close deletes what the run created and closes both connections. It runs
// with a fresh deadline, also after the run's context was cancelled.
func (b *bench) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.cleanup(ctx)
	b.c.Close()
	b.db.Close()
}

func (b *bench) cleanup(ctx context.Context) {
	b.cleanMu.Lock()
	topics, keys := b.topics, b.keys
	b.topics, b.keys = nil, nil
	b.cleanMu.Unlock()
	for _, t := range topics {
		_ = b.c.DeleteTopic(ctx, t)                    // with producer states and dedupe keys
		keys = append(keys, b.db.Keys.TopicDeleted(t)) // and its tombstone: nothing of the run is left
	}
	if len(keys) > 0 {
		_ = b.db.RawDelete(ctx, keys...)
	}
}

// topic creates a fresh topic for one phase, deleted by cleanup.
func (b *bench) topic(ctx context.Context, phase string) (string, error) {
	name := b.id + "-" + phase
	if err := b.c.CreateTopic(ctx, name, herald.TopicConfig{Partitions: b.cfg.Partitions}); err != nil {
		return "", err
	}
	b.cleanMu.Lock()
	b.topics = append(b.topics, name)
	b.cleanMu.Unlock()
	return name, nil
}

// rawStreams names fresh raw streams for one phase, deleted by cleanup.
func (b *bench) rawStreams(phase string) []string {
	keys := make([]string, b.cfg.Partitions)
	for p := range keys {
		keys[p] = b.db.Keys.RawStream(b.id+"-"+phase, p)
	}
	b.cleanMu.Lock()
	b.keys = append(b.keys, keys...)
	b.cleanMu.Unlock()
	return keys
}

// meter measures one side of a phase.
type meter struct {
	b      *bench
	start  time.Time
	cpu    time.Duration
	server time.Duration
}

func (b *bench) meter(ctx context.Context) *meter {
	m := &meter{b: b}
	if info, err := b.db.ServerInfo(ctx); err == nil {
		m.server = info.CPU
	}
	m.cpu = processCPU()
	m.start = time.Now()
	return m
}

// stop ends the measurement at end (the moment the last counted event was
// done) and returns the side with events counted.
func (m *meter) stop(ctx context.Context, end time.Time, events int64) Side {
	s := Side{Events: events, Elapsed: end.Sub(m.start), ClientCPU: processCPU() - m.cpu}
	if info, err := m.b.db.ServerInfo(ctx); err == nil && m.server > 0 {
		s.ServerCPU = info.CPU - m.server
	}
	return s
}

// firstErr keeps the first error of many goroutines and cancels them.
type firstErr struct {
	once   sync.Once
	err    error
	cancel context.CancelFunc
}

func (f *firstErr) set(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	f.once.Do(func() { f.err = err; f.cancel() })
}

// forEach runs fn in n goroutines with a shared context that ends at the
// first error or with ctx, and returns the first error. The goroutines check
// the clock themselves, so that every call they start completes (and is
// counted) instead of being cut short by a deadline.
func forEach(ctx context.Context, n int, fn func(ctx context.Context, g int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fe := &firstErr{cancel: cancel}
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fe.set(fn(ctx, g))
		}()
	}
	wg.Wait()
	return fe.err
}

// stamp writes the current time into the first 8 bytes of buf.
func stamp(buf []byte) { binary.BigEndian.PutUint64(buf, uint64(time.Now().UnixNano())) }

// since reads a stamp and returns the time since.
func since(data []byte) (time.Duration, bool) {
	if len(data) < 8 {
		return 0, false
	}
	return time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(data)))), true
}

// samples collects latencies from many goroutines without a lock.
type samples struct {
	mu sync.Mutex
	d  []time.Duration
	n  atomic.Int64
}

func newSamples(capacity int) *samples { return &samples{d: make([]time.Duration, 0, capacity)} }

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	if len(s.d) < cap(s.d) {
		s.d = append(s.d, d)
	}
	s.mu.Unlock()
	s.n.Add(1)
}

func (s *samples) count() int64 { return s.n.Load() }

// latency computes the percentiles of what was collected; call it after
// every adder has stopped.
func (s *samples) latency() *Latency { return percentiles(s.sorted()) }

// sorted returns a sorted copy of what was collected.
func (s *samples) sorted() []time.Duration {
	s.mu.Lock()
	d := slices.Clone(s.d) // late arrivals may still be added
	s.mu.Unlock()
	slices.Sort(d)
	return d
}

// percentiles reads the percentiles of sorted latencies.
func percentiles(d []time.Duration) *Latency {
	n := len(d)
	if n == 0 {
		return &Latency{}
	}
	q := func(f float64) time.Duration { return d[min(n-1, int(f*float64(n)))] }
	return &Latency{P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: d[n-1], Samples: n}
}

// paced sends one event every 1/rate seconds for d to send, spread over
// workers goroutines, each with its own payload buffer (stamped with the
// send time). It returns the number sent and the first error.
func paced(ctx context.Context, rate, workers, size int, d time.Duration, send func(ctx context.Context, buf []byte) error) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fe := &firstErr{cancel: cancel}
	ticks := make(chan struct{}, 4096)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, size)
			for range ticks {
				if ctx.Err() != nil {
					continue // drain
				}
				stamp(buf)
				if err := send(ctx, buf); err != nil {
					fe.set(err)
					continue
				}
				sent.Add(1)
			}
		}()
	}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	total := int(int64(d) / int64(interval))
	for i := 0; i < total && ctx.Err() == nil; i++ {
		if ahead := time.Duration(i)*interval - time.Since(start); ahead > 0 {
			time.Sleep(ahead) // paced, not spinning: the client shares the machine
		}
		ticks <- struct{}{}
	}
	close(ticks)
	wg.Wait()
	if fe.err == nil && ctx.Err() != nil {
		return sent.Load(), context.Cause(ctx)
	}
	return sent.Load(), fe.err
}

// waitCount waits until count() reaches want, or for stall without
// progress, or until ctx ends; it returns the time the last progress was seen.
func waitCount(ctx context.Context, want int64, stall time.Duration, count func() int64) time.Time {
	last, lastN := time.Now(), count()
	for lastN < want && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
		if n := count(); n != lastN {
			last, lastN = time.Now(), n
		} else if time.Since(last) > stall {
			break
		}
	}
	return last
}

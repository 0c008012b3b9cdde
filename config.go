package herald

import (
	"crypto/tls"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/rueidis"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald/internal/rdb"
)

// Defaults used when a Config or TopicConfig field is zero.
const (
	DefaultURL           = "redis://127.0.0.1:6379"
	DefaultNamespace     = "herald"
	DefaultPartitions    = 1 // on a standalone Redis; on a cluster, PartitionsPerMaster per master
	DefaultDedupeWindow  = 2 * time.Minute
	DefaultMaxEventBytes = 1 << 20
	// DefaultPublishTimeout covers a failover with margin: Redis Cluster
	// promotes a replica cluster-node-timeout (default 15 s) plus an
	// election after a master dies; measured 6-10 s with a 5 s node timeout.
	DefaultPublishTimeout = 30 * time.Second
	DefaultMaxBatch       = 512
	DefaultMaxPending     = 16384
	// DefaultSpinWait is Config.SpinWait where GOMAXPROCS >= SpinMinProcs.
	DefaultSpinWait = rdb.DefaultSpinWait
	// SpinMinProcs is the GOMAXPROCS from which a zero SpinWait spins.
	SpinMinProcs = rdb.SpinMinProcs
	// MaxSpinWait bounds Config.SpinWait.
	MaxSpinWait = rdb.MaxSpinWait
	// PartitionsPerMaster is the partitions per master of a topic created
	// on a cluster without a partition count: two keep every master busy
	// (docs/scaling.md).
	PartitionsPerMaster = 2
	// MaxPartitions bounds TopicConfig.Partitions.
	MaxPartitions = 1024
	// MaxTopicNameLen bounds topic and group names.
	MaxTopicNameLen = 200
)

// Config configures a Client. The zero value connects to DefaultURL.
type Config struct {
	// URL of Redis: redis://[user:password@]host:port[/db], rediss:// for
	// TLS; several seeds separated by commas for a cluster.
	URL string
	// TLS overrides the TLS configuration of a rediss:// URL.
	TLS *tls.Config
	// Redis is an existing client to use instead of dialing URL. Close
	// leaves it open.
	Redis rueidis.Client
	// Namespace prefixes every key (default "herald").
	Namespace string
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// DisableAutoCreate makes Publish to an unknown topic fail with
	// ErrTopicNotFound instead of creating it with DefaultTopic.
	DisableAutoCreate bool
	// DefaultTopic configures topics created by Publish or Subscribe.
	DefaultTopic TopicConfig
	// PublishTimeout bounds how long a batch is retried after errors whose
	// outcome is unknown, inside the publish call (default 30s: a failover
	// with margin; see docs/operations.md).
	PublishTimeout time.Duration
	// MaxBatch is the most events appended in one script call (default 512).
	MaxBatch int
	// MaxPending bounds the events PublishAsync has queued and not yet
	// settled, per client (default 16384); PublishAsync waits while that
	// many are.
	MaxPending int
	// ProducerID names this client's idempotent producer in Redis keys
	// (default random). A random epoch is always appended: sequence numbers
	// restart with every Client, so two clients never share state.
	ProducerID string
	// Replicas is how many replicas a Replicated publish waits for (default 1).
	Replicas int
	// ReplicationTimeout bounds that wait (default 500ms).
	ReplicationTimeout time.Duration
	// AllowDegraded accepts Replicated publishes that fewer than Replicas
	// replicas acknowledged within ReplicationTimeout: their positions say
	// Degraded and Stats().DegradedPublishes counts them. Off (the default),
	// such a publish returns ErrNotReplicated (the events are stored on the
	// master either way; WAIT cannot undo an append). The AllowDegraded
	// publish option does the same for one call.
	AllowDegraded bool
	// TracerProvider makes the spans of publishes and deliveries (tracing.go,
	// docs/operations.md); nil takes the global one (otel.GetTracerProvider).
	TracerProvider trace.TracerProvider
	// Propagator writes and reads the trace context in event headers; nil
	// takes the global one (otel.GetTextMapPropagator).
	Propagator propagation.TextMapPropagator
	// SpinWait is how long a producer lane or a partition reader polls its
	// connection for a reply before it parks in Go's poller: on a machine
	// with idle cores that saves a wake-up per round trip (docs/design.md,
	// "Waiting for the reply"). Zero takes DefaultSpinWait (30µs) where
	// GOMAXPROCS is SpinMinProcs (8) or more and no spin below, where the
	// spinning goroutine would take CPU from the others; a negative value
	// turns it off; at most MaxSpinWait (1ms). At most a quarter of
	// GOMAXPROCS goroutines spin at once, and a connection whose spins keep
	// missing (a quiet partition, a distant server) stops spinning for a
	// while. Not used with Redis (a client given), whose connections Herald
	// does not dial.
	SpinWait time.Duration

	appendWay appendWay // how batches are appended (tests and benchmarks compare the ways)
}

// appendWay is how a partition writer appends a batch that every way can
// take (docs/design.md, "Publishing").
type appendWay int

const (
	// wayPlain: pipelined XADDs on the lane's connection; a retry after an
	// unknown outcome fences that connection and reads the tail
	// (rdb.AppendPlain). Batches with deduplicated events take the script.
	wayPlain appendWay = iota
	// wayScript: stream_append.lua (producer sequence checked in Redis).
	wayScript
	// wayMulti: WATCH-guarded MULTI/EXEC for big plain batches, the script
	// for the others (rdb.AppendMulti).
	wayMulti
)

// Durability says when a publish is acknowledged.
type Durability int

const (
	// DurabilityDefault takes the topic's level (Memory unless the topic says otherwise).
	DurabilityDefault Durability = iota
	// Memory acknowledges when the master has applied the append. A crash of
	// the master before it replicated or persisted the events can lose them.
	Memory
	// Replicated acknowledges after the append and a WAIT for
	// Config.Replicas replicas on the same connection. When fewer replicas
	// answer within Config.ReplicationTimeout (for example right after a
	// failover, before the shard has a replica again), the publish
	// fails with ErrNotReplicated, or is reported as degraded when the caller
	// accepted that (AllowDegraded).
	Replicated
)

// String returns "memory", "replicated" or "default".
func (d Durability) String() string {
	switch d {
	case Memory:
		return "memory"
	case Replicated:
		return "replicated"
	}
	return "default"
}

// ParseDurability parses "memory" or "replicated".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "memory":
		return Memory, nil
	case "replicated":
		return Replicated, nil
	case "", "default":
		return DurabilityDefault, nil
	}
	return 0, invalid("durability %q is not supported; use memory or replicated", s)
}

// TopicConfig configures a topic at creation. Zero fields take defaults.
type TopicConfig struct {
	// Partitions is fixed at creation, at most MaxPartitions. Zero takes
	// DefaultPartitions (1) on a standalone Redis and PartitionsPerMaster
	// (2) per master on a cluster, counted when the topic is created, so
	// that a topic spreads over the shards and grows with them.
	Partitions int
	// MaxLen trims each partition to about this many events (0: no limit).
	MaxLen int64
	// MaxAge trims events older than this (0: no limit).
	MaxAge time.Duration
	// DedupeWindow is how long a caller-set event id is remembered (default 2m).
	DedupeWindow time.Duration
	// DedupeAll deduplicates every event by id, also generated ones.
	DedupeAll bool
	// MaxEventBytes bounds one event's size (default 1 MiB).
	MaxEventBytes int
	// Durability is the topic's default durability (default Memory).
	Durability Durability
	// TrimAcked trims events once every consumer group of the topic has
	// acknowledged them (retention.go); MaxLen and MaxAge stay hard caps.
	TrimAcked bool
}

// ParseSpinWait reads a Config.SpinWait as people write it: "auto" (or
// empty) is 0, "off" is -1, and a duration from 1µs to MaxSpinWait
// ("30us") is itself.
func ParseSpinWait(s string) (time.Duration, error) {
	switch s {
	case "", "auto":
		return 0, nil
	case "off":
		return -1, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Microsecond || d > MaxSpinWait {
		return 0, invalid("spin wait %q is not auto, off or a duration from 1us to %v (e.g. 30us)", s, MaxSpinWait)
	}
	return d, nil
}

func (c *Config) fill() error {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if strings.ContainsAny(c.Namespace, "{} \t\r\n") {
		return invalid("namespace %q contains braces or spaces; use letters, digits and ':._-'", c.Namespace)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.SpinWait > MaxSpinWait {
		return invalid("spin wait %v is over %v: a spin holds a CPU; use at most %v (0 picks it by the cores, a negative value turns it off)", c.SpinWait, MaxSpinWait, MaxSpinWait)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.ReplicationTimeout <= 0 {
		c.ReplicationTimeout = 500 * time.Millisecond
	}
	return c.DefaultTopic.fill()
}

// fill sets defaults and checks ranges. Partitions stays 0 when unset: its
// default depends on the deployment (Client.createTopic).
// Validate reports what is wrong with t (an error wrapping ErrInvalid), or
// nil; zero fields are fine and take their defaults. CreateTopic validates
// too: Validate is for checking a configuration before connecting.
func (t TopicConfig) Validate() error { return t.fill() }

func (t *TopicConfig) fill() error {
	if t.Partitions < 0 || t.Partitions > MaxPartitions {
		return invalid("partitions %d out of range; use 1..%d", t.Partitions, MaxPartitions)
	}
	if t.MaxLen < 0 {
		return invalid("max length %d is negative; use 0 for no limit", t.MaxLen)
	}
	if t.MaxAge < 0 {
		return invalid("max age %s is negative; use 0 for no limit", t.MaxAge)
	}
	if t.DedupeWindow == 0 {
		t.DedupeWindow = DefaultDedupeWindow
	}
	if t.DedupeWindow < time.Millisecond {
		return invalid("dedupe window %s is too short; use at least 1ms", t.DedupeWindow)
	}
	if t.Durability == DurabilityDefault {
		t.Durability = Memory
	}
	if t.Durability != Memory && t.Durability != Replicated {
		return invalid("durability %d is not supported; use herald.Memory or herald.Replicated", t.Durability)
	}
	if t.MaxEventBytes == 0 {
		t.MaxEventBytes = DefaultMaxEventBytes
	}
	if t.MaxEventBytes < 0 || t.MaxEventBytes > 512<<20 {
		return invalid("max event size %d out of range; use 1..%d bytes", t.MaxEventBytes, 512<<20)
	}
	return nil
}

// ValidateName checks a topic or group name: 1-200 characters of letters,
// digits, '.', '-', '_' and '/'.
func ValidateName(kind, name string) error {
	if name == "" {
		return invalid("%s name is empty; use 1-%d letters, digits, '.', '-', '_' or '/'", kind, MaxTopicNameLen)
	}
	if len(name) > MaxTopicNameLen {
		return invalid("%s name is %d characters long; use at most %d", kind, len(name), MaxTopicNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '/' {
			continue
		}
		r, _ := utf8.DecodeRuneInString(name[i:]) // the character, not its first byte
		return invalid("%s name %q has %q at byte %d; use only letters, digits, '.', '-', '_' and '/'", kind, name, string(r), i)
	}
	return nil
}

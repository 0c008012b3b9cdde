package herald

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/heraldbus/herald/internal/celexpr"
)

// Handler handles delivered messages. Returning nil acknowledges the
// message; an error schedules a retry with backoff, and after MaxAttempts
// (or at once for an error wrapped with Permanent) moves the event to the
// partition's dead-letter stream. ctx is cancelled when the subscription
// stops; an error returned after that hands the event back unhandled (it is
// not counted as an attempt), while nil still acknowledges it.
type Handler interface {
	Handle(ctx context.Context, m *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m *Message) error { return f(ctx, m) }

// Defaults of SubscribeOption.
const (
	DefaultConcurrency       = 8
	DefaultMaxInFlight       = 4096
	DefaultReadBatch         = 256
	DefaultMaxAttempts       = 8
	DefaultRetryBackoff      = time.Second
	DefaultMaxRetryBackoff   = 5 * time.Minute
	DefaultVisibilityTimeout = 30 * time.Second
	DefaultBlock             = 2 * time.Second
	DefaultLeaseTime         = 5 * time.Second
)

// Start says where a new consumer group starts reading.
type Start int

const (
	// StartNow delivers events published after the group was created (default).
	StartNow Start = iota
	// StartBeginning delivers every event still in the topic.
	StartBeginning
)

// SubscribeOption adjusts a subscription.
type SubscribeOption func(*subOptions)

type subOptions struct {
	start       Start
	consumer    string
	concurrency int
	maxInFlight int
	readBatch   int
	maxAttempts int
	backoff     time.Duration
	maxBackoff  time.Duration
	visibility  time.Duration
	block       time.Duration
	filter      string
	filterPrg   *celexpr.Program
	unordered   bool
	lease       time.Duration
	startAt     *SeekTarget   // FromTime / FromTarget: overrides start for a new group
	inlineMax   time.Duration // a reader may run a handler seen this cheap per event (ordered.go); tests change it
}

// From sets where a new group starts; an existing group keeps its position.
func From(s Start) SubscribeOption { return func(o *subOptions) { o.start, o.startAt = s, nil } }

// FromTime makes a new group start at the first event stored at or after t
// (by stream position time), on every partition; an existing group keeps its
// position (move it with Client.SeekGroup).
func FromTime(t time.Time) SubscribeOption { return FromTarget(ToTime(t)) }

// FromTarget makes a new group start at target (ToBeginning, ToEnd, ToTime,
// or ToPosition: that partition at the position, the others at the
// beginning), as Client.CreateGroup does; an existing group keeps its
// position.
func FromTarget(target SeekTarget) SubscribeOption {
	return func(o *subOptions) { o.startAt = &target }
}

// Consumer names this consumer within the group (default host-pid-random).
// A consumer restarted under the same name first re-delivers what it had
// received but not acknowledged.
func Consumer(name string) SubscribeOption { return func(o *subOptions) { o.consumer = name } }

// Concurrency is the number of handler goroutines (default 8). Events are
// spread over them by key (ordered) or evenly (Unordered); each handles its
// share one event at a time, so a slow handler call holds back the keys that
// share its goroutine (a failing one does not: it waits for its retry aside).
// Raise it for slow handlers; use 1 to handle every event of the consumer one
// at a time.
func Concurrency(n int) SubscribeOption { return func(o *subOptions) { o.concurrency = n } }

// MaxInFlight bounds events read but not yet acknowledged (default 4096;
// each partition reader takes at most its share of it per read).
func MaxInFlight(n int) SubscribeOption { return func(o *subOptions) { o.maxInFlight = n } }

// ReadBatch is the most events read per partition per round trip (default
// 256). Bigger batches cost the client less per event: 1.33-1.45 µs of CPU
// per event at 128, 1.10-1.16 µs at 256 (BenchmarkConsumeEngine, 2 cores).
func ReadBatch(n int) SubscribeOption { return func(o *subOptions) { o.readBatch = n } }

// MaxAttempts is the number of deliveries before an event is dead-lettered (default 8).
func MaxAttempts(n int) SubscribeOption { return func(o *subOptions) { o.maxAttempts = n } }

// Backoff sets the first retry delay and its cap (default 1s, 5m). Retry n
// waits base*2^(n-1), capped, with jitter between half and all of it.
func Backoff(base, max time.Duration) SubscribeOption {
	return func(o *subOptions) { o.backoff, o.maxBackoff = base, max }
}

// VisibilityTimeout is how long an entry of an Unordered subscription may
// stay unacknowledged by a silent consumer before another consumer takes it
// over (default 30s). Running handlers keep their entries alive, so a long
// handler is not redelivered. Ordered subscriptions hand a silent consumer's
// partitions over when its lease runs out instead (see LeaseTime).
func VisibilityTimeout(d time.Duration) SubscribeOption {
	return func(o *subOptions) { o.visibility = d }
}

// Filter handles only events for which the CEL condition expr is true; the
// others are acknowledged without calling the handler and counted in
// Stats().Filtered. The condition sees id, type, source, subject, key,
// content_type, headers, time and data (JSON payloads parsed); reading a
// field an event lacks makes it false (see docs/routing.md).
func Filter(expr string) SubscribeOption { return func(o *subOptions) { o.filter = expr } }

// Unordered opts out of per-key order for the last bit of throughput: every
// consumer of the group reads every partition, events of one key may be
// handled concurrently and in any order, and a failed event is retried
// through the group's retry stream while later events go on. ErrRelease
// hands an event to the group at once.
//
// By default a subscription is ordered: within the group, events with the
// same key are handled one at a time in stream order, across consumers and
// retries; a failing event holds back only its key. Each partition is read by
// one consumer at a time under a lease (see LeaseTime). All consumers of a
// group use the same mode: while consumers of one mode are live, Subscribe
// refuses one of the other mode with ErrInvalid (an unordered consumer
// reads every partition, whoever holds its lease, and an ordered owner
// claims what other consumers read on its partitions). A crashed unordered
// consumer counts as live for up to its VisibilityTimeout.
func Unordered() SubscribeOption { return func(o *subOptions) { o.unordered = true } }

// LeaseTime is how long an ordered consumer's ownership of a partition lasts
// without renewal (default 5s; renewed every third of it). It bounds how
// long a crashed consumer's partitions wait before another consumer takes
// them over; a consumer that cannot renew stops handling a partition a tenth
// of the lease time before its lease runs out in Redis.
func LeaseTime(d time.Duration) SubscribeOption { return func(o *subOptions) { o.lease = d } }

// BlockTime is how long one read waits for new events (default 2s).
func BlockTime(d time.Duration) SubscribeOption { return func(o *subOptions) { o.block = d } }

func (o *subOptions) fill() error {
	if o.consumer == "" {
		h, _ := os.Hostname()
		o.consumer = fmt.Sprintf("%s-%d-%s", h, os.Getpid(), newID()[24:])
	}
	if err := ValidateName("consumer", o.consumer); err != nil {
		return err
	}
	set := func(v *int, def int, name string) error {
		if *v == 0 {
			*v = def
		}
		if *v < 0 {
			return invalid("%s %d is negative; use a positive number", name, *v)
		}
		return nil
	}
	setD := func(v *time.Duration, def time.Duration, name string) error {
		if *v == 0 {
			*v = def
		}
		if *v < 0 {
			return invalid("%s %s is negative; use a positive duration", name, *v)
		}
		return nil
	}
	for _, e := range []error{
		set(&o.concurrency, DefaultConcurrency, "concurrency"),
		set(&o.maxInFlight, DefaultMaxInFlight, "max in-flight"),
		set(&o.readBatch, DefaultReadBatch, "read batch"),
		set(&o.maxAttempts, DefaultMaxAttempts, "max attempts"),
		setD(&o.backoff, DefaultRetryBackoff, "retry backoff"),
		setD(&o.maxBackoff, DefaultMaxRetryBackoff, "max retry backoff"),
		setD(&o.visibility, DefaultVisibilityTimeout, "visibility timeout"),
		setD(&o.block, DefaultBlock, "block time"),
		setD(&o.lease, DefaultLeaseTime, "lease time"),
	} {
		if e != nil {
			return e
		}
	}
	if o.filter != "" {
		prg, err := celexpr.Compile(o.filter)
		if err != nil {
			return invalid("filter %q: %v", o.filter, err)
		}
		o.filterPrg = prg
	}
	if o.inlineMax == 0 {
		o.inlineMax = defaultInlineMax
	}
	if o.maxInFlight < o.concurrency {
		o.maxInFlight = o.concurrency
	}
	if o.lease < 150*time.Millisecond {
		return invalid("lease time %s is too short; use at least 150ms", o.lease)
	}
	if o.visibility < 30*time.Millisecond {
		return invalid("visibility timeout %s is too short; use at least 30ms", o.visibility)
	}
	return nil
}

func (o *subOptions) retryDelay(attempt int) time.Duration {
	d := o.backoff
	for i := 1; i < attempt && d < o.maxBackoff; i++ {
		d *= 2
	}
	if d > o.maxBackoff {
		d = o.maxBackoff
	}
	// Jitter in [d/2, d]: spreads retries of many failing events.
	half := int64(d / 2)
	if half > 0 {
		d = time.Duration(half + randInt63n(half+1))
	}
	return d
}

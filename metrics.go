package herald

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald/internal/rdb"
)

// Metrics of a Client for monitoring systems: the counters and latency
// histograms it keeps in memory (a few atomic adds per batch and per
// handler call, nothing allocated), read with Client.Metrics. The
// heraldprom package turns them into Prometheus metrics; docs/operations.md
// lists those.

// Outcome label values: one set for every Herald counter with an outcome
// (the library's, the collector's and the gateway's).
const (
	OutcomeOK         = "ok"          // published and stored; handled and acknowledged
	OutcomeDuplicate  = "duplicate"   // a publish answered with an earlier position (dedupe window)
	OutcomeError      = "error"       // a publish or a handler failed
	OutcomeTimeout    = "timeout"     // a publish past Config.PublishTimeout; a handler that returned a deadline error
	OutcomeFiltered   = "filtered"    // rejected by the subscription's Filter: acknowledged unhandled
	OutcomeRetry      = "retry"       // a failed delivery scheduled for another attempt
	OutcomeDeadLetter = "dead_letter" // a failed delivery moved to the dead-letter stream
)

// LatencyBuckets are the upper bounds, in seconds, of Herald's latency
// histograms (an implicit +Inf bucket follows).
var LatencyBuckets = [...]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Histogram is a snapshot of a latency histogram.
type Histogram struct {
	Count uint64
	Sum   float64 // seconds
	// Buckets are cumulative counts: Buckets[i] observations took at most
	// LatencyBuckets[i] seconds.
	Buckets [len(LatencyBuckets)]uint64
}

// TopicMetrics are a client's publish metrics for one topic.
type TopicMetrics struct {
	Topic string
	// Published counts events by outcome: OutcomeOK, OutcomeDuplicate,
	// OutcomeError, OutcomeTimeout.
	Published map[string]uint64
	// AppendDuration is the time from sending a batch to Redis to its
	// confirmation, retries included, one observation per batch.
	AppendDuration Histogram
}

// GroupMetrics are a client's delivery metrics for one consumer group of a
// topic, summed over its subscriptions, the finished ones included.
type GroupMetrics struct {
	Topic, Group string
	// Handled counts deliveries by outcome: OutcomeOK, OutcomeError,
	// OutcomeTimeout (the handler's result) and OutcomeFiltered.
	Handled map[string]uint64
	// Retries and DeadLetters count what became of failed deliveries.
	Retries, DeadLetters uint64
	Reclaimed            uint64 // pending entries taken over from other consumers
	RedisErrors          uint64 // Redis errors met and retried
	// HandlerDuration is the time handlers took; Latency the time from an
	// event's time to its handler's start.
	HandlerDuration, Latency Histogram
}

// Metrics is a snapshot of a Client's metrics, sorted by topic and group.
type Metrics struct {
	Topics            []TopicMetrics
	Groups            []GroupMetrics
	DegradedPublishes uint64
}

// Metrics returns the client's publish and delivery metrics since it was
// created.
func (c *Client) Metrics() Metrics {
	return c.metrics.snapshot(c.stats.degraded.Load())
}

// histogram is a lock-free latency histogram over LatencyBuckets.
type histogram struct {
	counts [len(LatencyBuckets) + 1]atomic.Uint64
	sumNS  atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	d = max(d, 0)
	s := d.Seconds()
	i := 0
	for i < len(LatencyBuckets) && s > LatencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNS.Add(int64(d))
}

// addTo adds h to out (a sum of shards).
func (h *histogram) addTo(out *Histogram) {
	var cum uint64
	for i := range LatencyBuckets {
		cum += h.counts[i].Load()
		out.Buckets[i] += cum
	}
	out.Count += cum + h.counts[len(LatencyBuckets)].Load()
	out.Sum += time.Duration(h.sumNS.Load()).Seconds()
}

func (h *histogram) snapshot() Histogram {
	var out Histogram
	h.addTo(&out)
	return out
}

type topicCounters struct {
	ok, dup, err, timeout atomic.Uint64
	append                histogram
}

type groupKey struct{ topic, group string }

// handlerShard is one of a group's counter shards: handler workers add to
// different shards (worker i to shard i mod 8), so that they do not all
// write one cache line per event.
type handlerShard struct {
	ok, err, timeout atomic.Uint64
	handler, latency histogram
	_                [64]byte
}

const handlerShards = 8

type groupCounters struct {
	shards [handlerShards]handlerShard
	// Under clientMetrics.mu: the live subscriptions' counters, and the
	// finished ones' totals (folded).
	live   map[*subStats]struct{}
	folded subTotals
}

type subTotals struct{ retried, dead, reclaimed, errors, filtered int64 }

func (t *subTotals) add(s *subStats) {
	t.retried += s.retried.Load()
	t.dead += s.dead.Load()
	t.reclaimed += s.reclaimed.Load()
	t.errors += s.errors.Load()
	t.filtered += s.filtered.Load()
}

// clientMetrics are a Client's metrics.
type clientMetrics struct {
	topics  sync.Map // topic name -> *topicCounters
	engines sync.Map // *subStats -> *groupCounters
	mu      sync.Mutex
	groups  map[groupKey]*groupCounters
}

func (m *clientMetrics) topic(name string) *topicCounters {
	if tc, ok := m.topics.Load(name); ok {
		return tc.(*topicCounters)
	}
	tc, _ := m.topics.LoadOrStore(name, &topicCounters{})
	return tc.(*topicCounters)
}

// appended counts a batch of n events appended to topic (writer.go).
func (m *clientMetrics) appended(topic string, start time.Time, res *rdb.AppendResult, err error, n int) {
	tc := m.topic(topic)
	switch {
	case err == nil:
		dup := 0
		for _, d := range res.Dup {
			if d {
				dup++
			}
		}
		tc.ok.Add(uint64(n - dup))
		tc.dup.Add(uint64(dup))
		tc.append.observe(time.Since(start))
	case errors.Is(err, ErrPublishTimeout) || errors.Is(err, context.DeadlineExceeded):
		tc.timeout.Add(uint64(n))
	default:
		tc.err.Add(uint64(n))
	}
}

// group returns the counters of e's group, registering e's subscription.
func (m *clientMetrics) group(e *engine) *groupCounters {
	if gc, ok := m.engines.Load(e.stats); ok {
		return gc.(*groupCounters)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.groups == nil {
		m.groups = map[groupKey]*groupCounters{}
	}
	k := groupKey{e.t.name, e.group}
	gc := m.groups[k]
	if gc == nil {
		gc = &groupCounters{live: map[*subStats]struct{}{}}
		m.groups[k] = gc
	}
	gc.live[e.stats] = struct{}{}
	m.engines.Store(e.stats, gc)
	return gc
}

// fold keeps the counters of a finished subscription (Client.removeSub).
func (m *clientMetrics) fold(s *Subscription) {
	v, ok := m.engines.LoadAndDelete(&s.stats)
	if !ok {
		return
	}
	gc := v.(*groupCounters)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, live := gc.live[&s.stats]; live {
		delete(gc.live, &s.stats)
		gc.folded.add(&s.stats)
	}
}

// handled counts, in the worker's shard gc, one handler call that started
// at start, and returns the time it ended.
func (m *clientMetrics) handled(gc *handlerShard, msg *Message, start time.Time, err error) time.Time {
	now := time.Now()
	gc.handler.observe(now.Sub(start))
	if !msg.Time.IsZero() && msg.Attempt <= 1 {
		gc.latency.observe(start.Sub(msg.Time))
	}
	switch {
	case err == nil:
		gc.ok.Add(1)
	case errors.Is(err, context.DeadlineExceeded):
		gc.timeout.Add(1)
	default:
		gc.err.Add(1)
	}
	return now
}

func (m *clientMetrics) snapshot(degraded int64) Metrics {
	out := Metrics{DegradedPublishes: uint64(max(degraded, 0))}
	m.topics.Range(func(k, v any) bool {
		tc := v.(*topicCounters)
		out.Topics = append(out.Topics, TopicMetrics{Topic: k.(string), AppendDuration: tc.append.snapshot(),
			Published: map[string]uint64{OutcomeOK: tc.ok.Load(), OutcomeDuplicate: tc.dup.Load(),
				OutcomeError: tc.err.Load(), OutcomeTimeout: tc.timeout.Load()}})
		return true
	})
	sort.Slice(out.Topics, func(i, j int) bool { return out.Topics[i].Topic < out.Topics[j].Topic })
	m.mu.Lock()
	for k, gc := range m.groups {
		t := gc.folded
		for s := range gc.live {
			t.add(s)
		}
		g := GroupMetrics{Topic: k.topic, Group: k.group, Handled: map[string]uint64{OutcomeFiltered: uint64(t.filtered)},
			Retries: uint64(t.retried), DeadLetters: uint64(t.dead), Reclaimed: uint64(t.reclaimed), RedisErrors: uint64(t.errors)}
		for i := range gc.shards {
			sh := &gc.shards[i]
			g.Handled[OutcomeOK] += sh.ok.Load()
			g.Handled[OutcomeError] += sh.err.Load()
			g.Handled[OutcomeTimeout] += sh.timeout.Load()
			sh.handler.addTo(&g.HandlerDuration)
			sh.latency.addTo(&g.Latency)
		}
		out.Groups = append(out.Groups, g)
	}
	m.mu.Unlock()
	sort.Slice(out.Groups, func(i, j int) bool {
		a, b := out.Groups[i], out.Groups[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Group < b.Group
	})
	return out
}

// BuildInfo is the version of the Herald module in the running program.
type BuildInfo struct {
	Version   string // module version, "(devel)" for a build from a checkout
	GoVersion string
}

// ReadBuildInfo reads Herald's version from the program's build information.
func ReadBuildInfo() BuildInfo {
	return BuildInfo{Version: version(), GoVersion: runtime.Version()}
}

var versionOnce = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	if bi.Main.Path == "github.com/heraldbus/herald" && bi.Main.Version != "" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/heraldbus/herald" {
			if d.Replace != nil && d.Replace.Version != "" {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return "(devel)"
})

func version() string { return versionOnce() }

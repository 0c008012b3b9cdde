// Package heraldprom exports a Herald client's metrics to Prometheus.
//
//	c, _ := herald.New(ctx, herald.Config{})
//	prometheus.MustRegister(heraldprom.NewCollector(c))
//
// The collector reads the client's in-memory counters and histograms
// (herald.Client.Metrics) at every scrape, and the consumer groups of every
// topic from Redis (lag, consumers, dead letters), at most every 5 seconds
// and within 5 seconds. It lives apart from package herald so that the
// library does not depend on the Prometheus client. `herald serve` serves the
// same collector at /metrics. docs/operations.md lists the metrics; every
// outcome label takes the values of herald.Outcome*.
package heraldprom

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldbus/herald"
)

// Defaults of the collector's Redis reads.
const (
	// DefaultGroupRefresh is how long the group gauges read from Redis are
	// reused before a scrape reads them again.
	DefaultGroupRefresh = 5 * time.Second
	// DefaultGroupTimeout bounds one read of the group gauges.
	DefaultGroupTimeout = 5 * time.Second
)

// Option adjusts a Collector.
type Option func(*Collector)

// Exclude leaves the named metrics out of the collector's output (for a
// program that already exports some of them under the same names).
func Exclude(names ...string) Option {
	return func(c *Collector) {
		for _, n := range names {
			c.exclude[n] = true
		}
	}
}

// GroupRefresh sets how long group gauges are reused between Redis reads
// (default DefaultGroupRefresh); a negative d leaves them out, and the
// collector then never talks to Redis.
func GroupRefresh(d time.Duration) Option { return func(c *Collector) { c.refresh = d } }

// Collector is a prometheus.Collector over a herald.Client. Register it
// with a prometheus.Registerer; it is safe for concurrent scrapes.
type Collector struct {
	c       *herald.Client
	exclude map[string]bool
	skip    map[*prometheus.Desc]bool
	refresh time.Duration
	descs   []*prometheus.Desc

	mu     sync.Mutex
	at     time.Time
	cached []prometheus.Metric
}

var (
	tg = []string{"topic", "group"}

	descPublished = prometheus.NewDesc("herald_publish_events_total",
		"Events published by this client, by topic and outcome (ok, duplicate, error, timeout).", []string{"topic", "outcome"}, nil)
	descAppend = prometheus.NewDesc("herald_publish_append_duration_seconds",
		"Time from sending a batch of events to Redis to its confirmation, retries included, by topic.", []string{"topic"}, nil)
	descDegraded = prometheus.NewDesc("herald_degraded_publishes_total",
		"Replicated publishes that fewer replicas acknowledged than asked (durability degraded).", nil, nil)
	descHandled = prometheus.NewDesc("herald_consumer_handled_total",
		"Deliveries to this client's handlers, by topic, group and outcome (ok, error, timeout, filtered).", []string{"topic", "group", "outcome"}, nil)
	descHandler = prometheus.NewDesc("herald_consumer_handler_duration_seconds",
		"Time handlers took, by topic and group.", tg, nil)
	descLatency = prometheus.NewDesc("herald_consumer_latency_seconds",
		"Time from an event's time to the start of its first handler call, by topic and group.", tg, nil)
	descRetries = prometheus.NewDesc("herald_consumer_retries_total",
		"Failed deliveries scheduled for another attempt, by topic and group.", tg, nil)
	descDead = prometheus.NewDesc("herald_consumer_dead_letters_total",
		"Failed deliveries moved to the dead-letter stream by this client, by topic and group.", tg, nil)
	descReclaimed = prometheus.NewDesc("herald_consumer_reclaimed_total",
		"Pending entries this client took over from other consumers, by topic and group.", tg, nil)
	descRedisErrs = prometheus.NewDesc("herald_consumer_redis_errors_total",
		"Redis errors this client's subscriptions met and retried, by topic and group.", tg, nil)
	descLagSeconds = prometheus.NewDesc("herald_group_lag_seconds",
		"Age of the oldest event the group has not read yet (0: none), the most over the topic's partitions.", tg, nil)
	descConsumers = prometheus.NewDesc("herald_group_consumers",
		"Consumers of the group (the most on one partition).", tg, nil)
	descGroupDead = prometheus.NewDesc("herald_group_dead_letters",
		"Dead letters of the group still stored.", tg, nil)
	descReadOK = prometheus.NewDesc("herald_group_metrics_read_success",
		"1 when the last read of the group gauges from Redis succeeded.", nil, nil)
	descBuild = prometheus.NewDesc("herald_build_info",
		"Herald's version and the Go version it was built with; always 1.", []string{"version", "goversion"}, nil)
)

// NewCollector returns a collector of c's metrics.
func NewCollector(c *herald.Client, opts ...Option) *Collector {
	col := &Collector{c: c, exclude: map[string]bool{}, refresh: DefaultGroupRefresh}
	for _, o := range opts {
		o(col)
	}
	all := []*prometheus.Desc{descPublished, descAppend, descDegraded, descHandled, descHandler, descLatency,
		descRetries, descDead, descReclaimed, descRedisErrs, descBuild}
	if col.refresh >= 0 {
		all = append(all, descLagSeconds, descConsumers, descGroupDead, descReadOK)
	}
	col.skip = map[*prometheus.Desc]bool{}
	for _, d := range all {
		if col.exclude[fqName(d)] {
			col.skip[d] = true
		} else {
			col.descs = append(col.descs, d)
		}
	}
	return col
}

// fqName is a Desc's metric name, read back from its String form (client_golang
// does not export it).
func fqName(d *prometheus.Desc) string {
	s := d.String() // Desc{fqName: "name", help: ...}
	const p = `Desc{fqName: "`
	if len(s) > len(p) && s[:len(p)] == p {
		s = s[len(p):]
		for i := 0; i < len(s); i++ {
			if s[i] == '"' {
				return s[:i]
			}
		}
	}
	return s
}

// Describe sends the descriptors of the collector's metrics.
func (col *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range col.descs {
		ch <- d
	}
}

// Collect sends the client's metrics and the group gauges.
func (col *Collector) Collect(ch chan<- prometheus.Metric) {
	send := func(d *prometheus.Desc, m func() prometheus.Metric) {
		if !col.skip[d] {
			ch <- m()
		}
	}
	m := col.c.Metrics()
	for _, t := range m.Topics {
		for _, o := range []string{herald.OutcomeOK, herald.OutcomeDuplicate, herald.OutcomeError, herald.OutcomeTimeout} {
			send(descPublished, func() prometheus.Metric {
				return prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(t.Published[o]), t.Topic, o)
			})
		}
		send(descAppend, func() prometheus.Metric { return hist(descAppend, t.AppendDuration, t.Topic) })
	}
	send(descDegraded, func() prometheus.Metric {
		return prometheus.MustNewConstMetric(descDegraded, prometheus.CounterValue, float64(m.DegradedPublishes))
	})
	for _, g := range m.Groups {
		for _, o := range []string{herald.OutcomeOK, herald.OutcomeError, herald.OutcomeTimeout, herald.OutcomeFiltered} {
			send(descHandled, func() prometheus.Metric {
				return prometheus.MustNewConstMetric(descHandled, prometheus.CounterValue, float64(g.Handled[o]), g.Topic, g.Group, o)
			})
		}
		send(descHandler, func() prometheus.Metric { return hist(descHandler, g.HandlerDuration, g.Topic, g.Group) })
		send(descLatency, func() prometheus.Metric { return hist(descLatency, g.Latency, g.Topic, g.Group) })
		for d, v := range map[*prometheus.Desc]uint64{descRetries: g.Retries, descDead: g.DeadLetters,
			descReclaimed: g.Reclaimed, descRedisErrs: g.RedisErrors} {
			send(d, func() prometheus.Metric {
				return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), g.Topic, g.Group)
			})
		}
	}
	bi := herald.ReadBuildInfo()
	send(descBuild, func() prometheus.Metric {
		return prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, bi.Version, bi.GoVersion)
	})
	if col.refresh < 0 {
		return
	}
	for _, gm := range col.groupGauges() {
		ch <- gm
	}
}

func hist(d *prometheus.Desc, h herald.Histogram, labels ...string) prometheus.Metric {
	b := make(map[float64]uint64, len(h.Buckets))
	for i, ub := range herald.LatencyBuckets {
		b[ub] = h.Buckets[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, b, labels...)
}

// groupGauges returns the group gauges, read again when older than the
// refresh interval.
func (col *Collector) groupGauges() []prometheus.Metric {
	col.mu.Lock()
	defer col.mu.Unlock()
	if col.cached == nil || time.Since(col.at) >= col.refresh {
		col.cached = col.readGroups()
		col.at = time.Now()
	}
	return col.cached
}

func (col *Collector) readGroups() []prometheus.Metric {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultGroupTimeout)
	defer cancel()
	var out []prometheus.Metric
	add := func(d *prometheus.Desc, v float64, labels ...string) {
		if !col.skip[d] {
			out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
		}
	}
	ok := 1.0
	topics, err := col.c.Topics(ctx)
	if err != nil {
		ok = 0
	}
	for _, t := range topics {
		gs, err := col.c.Groups(ctx, t.Name)
		if err != nil {
			ok = 0
			continue
		}
		for _, g := range gs {
			add(descLagSeconds, g.LagAge.Seconds(), t.Name, g.Name)
			add(descConsumers, float64(g.Consumers), t.Name, g.Name)
		}
		ls, err := col.c.GroupLosses(ctx, t.Name)
		if err != nil {
			ok = 0
			continue
		}
		for _, l := range ls {
			add(descGroupDead, float64(l.DeadLetters), t.Name, l.Group)
		}
	}
	add(descReadOK, ok)
	return out
}

package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/heraldprom"
)

func prometheusGoCollectors() []prometheus.Collector {
	return []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
}

// metrics are the gateway's Prometheus metrics (docs/http-api.md lists them).
type metrics struct {
	reg             *prometheus.Registry
	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	publishDuration *prometheus.HistogramVec
	delivered       *prometheus.CounterVec // settled, by outcome (herald.Outcome*)
	sent            *prometheus.CounterVec // handed over
	deliveryLatency *prometheus.HistogramVec
	webhookDuration *prometheus.HistogramVec
	channelMessages *prometheus.CounterVec
	streams         *prometheus.GaugeVec
	redisErrors     prometheus.Counter
	hubFeeds        prometheus.Gauge
	hubSubscribers  prometheus.Gauge
	hubLagged       prometheus.Counter
	groupFeeds      prometheus.Gauge
	sessions        prometheus.Gauge
	windowFull      prometheus.Counter
	limited         *prometheus.CounterVec
	subs            *subStatsCollector
	c               *herald.Client // delivery spans (tracing.go)
}

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg *prometheus.Registry, g *Gateway) (*metrics, error) {
	m := &metrics{reg: reg, c: g.c,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_http_requests_total",
			Help: "HTTP requests by route, method and status code."}, []string{"route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_http_request_duration_seconds",
			Help: "Time to answer HTTP requests (streams: their whole life), by route.", Buckets: latencyBuckets}, []string{"route"}),
		publishDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_publish_duration_seconds",
			Help: "Time for a publish request's events to be confirmed by Redis, by topic.", Buckets: latencyBuckets}, []string{"topic"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_deliveries_total",
			Help: "Settled deliveries by topic, group, transport (sse, ws, webhook) and outcome (herald.Outcome*: ok = acknowledged or 2xx, error = nacked or failed POST, timeout = released unacknowledged or POST timed out)."},
			[]string{"topic", "group", "via", "outcome"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_deliveries_sent_total",
			Help: "Events handed to clients (SSE, WebSocket; group empty for live tails) or POSTed to webhooks, by topic, group and transport."},
			[]string{"topic", "group", "via"}),
		deliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_delivery_latency_seconds",
			Help: "Time from an event's time to its delivery to a client, by topic and transport.", Buckets: latencyBuckets}, []string{"topic", "via"}),
		webhookDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "herald_webhook_request_duration_seconds",
			Help: "Duration of webhook POSTs, by webhook.", Buckets: latencyBuckets}, []string{"webhook"}),
		channelMessages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_channel_messages_total",
			Help: "Live channel messages published and delivered through the gateway."}, []string{"direction"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herald_streams",
			Help: "Open streams by kind (sse_group, sse_tail, sse_channel, monitor, websocket)."}, []string{"kind"}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_redis_errors_total",
			Help: "Redis errors met by gateway requests (subscriptions' errors are in herald_subscription_redis_errors_total)."}),
	}
	m.hubFeeds = prometheus.NewGauge(prometheus.GaugeOpts{Name: "herald_hub_feeds",
		Help: "Shared live-tail readers running (one per topic with live tails in the process)."})
	m.hubSubscribers = prometheus.NewGauge(prometheus.GaugeOpts{Name: "herald_hub_subscribers",
		Help: "Live tails (SSE, WebSocket) attached to the shared readers."})
	m.hubLagged = prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_hub_lagged_total",
		Help: "Times a live tail's buffer was full: it caught up by position from Redis."})
	m.groupFeeds = prometheus.NewGauge(prometheus.GaugeOpts{Name: "herald_group_feeds",
		Help: "Shared group consumers running (one per topic and group in the process)."})
	m.sessions = prometheus.NewGauge(prometheus.GaugeOpts{Name: "herald_group_sessions",
		Help: "SSE group sessions (connected, or waiting for their client within the resume window)."})
	m.windowFull = prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_window_full_total",
		Help: "Times a group stream's window filled with unconfirmed events (the stream said window_full)."})
	m.limited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_limited_total",
		Help: "Requests refused by a bound (429/503), by limit."}, []string{"limit"})
	m.subs = &subStatsCollector{subs: map[*herald.Subscription]subLabels{}, totals: map[subLabels]*herald.SubscriptionStats{}}
	c := g.c
	groups := &groupCollector{c: c}
	// The client's own metrics (publish outcomes, handlers, group lag...) come
	// from the library's collector, as in any program using Herald; the
	// gateway's group dead letters are in admin_time.go.
	client := heraldprom.NewCollector(c, heraldprom.Exclude("herald_group_dead_letters"))
	for _, col := range []prometheus.Collector{client, m.httpRequests, m.httpDuration, m.publishDuration, m.delivered, m.sent,
		m.deliveryLatency, m.webhookDuration, m.channelMessages, m.streams, m.redisErrors, m.hubFeeds, m.hubSubscribers, m.hubLagged, m.limited, m.groupFeeds, m.sessions, m.windowFull, m.subs, groups} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observeHTTP(route, method string, status int, d time.Duration) {
	if status == 0 {
		status = http.StatusOK
	}
	m.httpRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// observePublish records a publish request's duration and Redis errors;
// its events' outcomes are counted by the client (heraldprom's
// herald_publish_events_total).
func (m *metrics) observePublish(topic string, _ int, ps []herald.Position, err error, d time.Duration) {
	if err != nil && ps == nil {
		if !errors.Is(err, herald.ErrInvalid) && !errors.Is(err, context.Canceled) {
			m.redisErrors.Inc()
		}
		return
	}
	m.publishDuration.WithLabelValues(topic).Observe(d.Seconds())
}

func (m *metrics) observeDelivery(msg *herald.Message, via string) {
	if via != "webhook" { // webhooks: a span around the POST (tracing.go)
		traceDelivery(m.c, msg, via)
	}
	m.sent.WithLabelValues(msg.Topic, msg.Group, via).Inc()
	if !msg.Time.IsZero() {
		m.deliveryLatency.WithLabelValues(msg.Topic, via).Observe(time.Since(msg.Time).Seconds())
	}
}

func (g *Gateway) handleMetrics(w http.ResponseWriter, r *http.Request, _ *principal) error {
	promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).ServeHTTP(w, r)
	return nil
}

type subLabels struct{ topic, group, via string }

// subStatsCollector turns the counters of the gateway's subscriptions into
// Prometheus counters that survive the subscriptions.
type subStatsCollector struct {
	mu     sync.Mutex
	subs   map[*herald.Subscription]subLabels
	last   map[*herald.Subscription]herald.SubscriptionStats
	totals map[subLabels]*herald.SubscriptionStats
}

var (
	descRetries  = prometheus.NewDesc("herald_retries_total", "Failed deliveries scheduled for a retry, by topic, group and transport.", []string{"topic", "group", "via"}, nil)
	descDead     = prometheus.NewDesc("herald_dead_letters_total", "Events moved to the dead-letter stream by the gateway's subscriptions.", []string{"topic", "group", "via"}, nil)
	descHandled  = prometheus.NewDesc("herald_acked_total", "Deliveries acknowledged by the gateway's subscriptions.", []string{"topic", "group", "via"}, nil)
	descSubErrs  = prometheus.NewDesc("herald_subscription_redis_errors_total", "Redis errors met (and retried) by the gateway's subscriptions.", []string{"topic", "group", "via"}, nil)
	descReclaim  = prometheus.NewDesc("herald_reclaimed_total", "Entries taken over from silent consumers.", []string{"topic", "group", "via"}, nil)
	descLag      = prometheus.NewDesc("herald_group_lag", "Events not yet delivered to a consumer group (-1: unknown).", []string{"topic", "group"}, nil)
	descPending  = prometheus.NewDesc("herald_group_pending", "Events delivered to a consumer group and not yet acknowledged.", []string{"topic", "group"}, nil)
	descSched    = prometheus.NewDesc("herald_group_scheduled_retries", "Retries scheduled for a consumer group.", []string{"topic", "group"}, nil)
	descOldest   = prometheus.NewDesc("herald_group_oldest_pending_seconds", "Age of a group's oldest pending event.", []string{"topic", "group"}, nil)
	descDLQ      = prometheus.NewDesc("herald_topic_dead_letters", "Dead letters stored for a topic.", []string{"topic"}, nil)
	descLength   = prometheus.NewDesc("herald_topic_events", "Events stored in a topic.", []string{"topic"}, nil)
	descScrapeOK = prometheus.NewDesc("herald_topics_scrape_success", "1 when the topic and group gauges were read from Redis.", nil, nil)
)

func (s *subStatsCollector) add(sub *herald.Subscription, l subLabels) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[sub] = l
}

// remove folds a finished subscription's last counters into the totals.
func (s *subStatsCollector) remove(sub *herald.Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fold()
	delete(s.subs, sub)
	delete(s.last, sub)
}

func (s *subStatsCollector) fold() {
	if s.last == nil {
		s.last = map[*herald.Subscription]herald.SubscriptionStats{}
	}
	for sub, l := range s.subs {
		now := sub.Stats()
		prev := s.last[sub]
		t := s.totals[l]
		if t == nil {
			t = &herald.SubscriptionStats{}
			s.totals[l] = t
		}
		t.Retried += now.Retried - prev.Retried
		t.DeadLettered += now.DeadLettered - prev.DeadLettered
		t.Handled += now.Handled - prev.Handled
		t.RedisErrors += now.RedisErrors - prev.RedisErrors
		t.Reclaimed += now.Reclaimed - prev.Reclaimed
		s.last[sub] = now
	}
}

func (s *subStatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRetries, descDead, descHandled, descSubErrs, descReclaim} {
		ch <- d
	}
}

func (s *subStatsCollector) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fold()
	for l, t := range s.totals {
		lv := []string{l.topic, l.group, l.via}
		ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(t.Retried), lv...)
		ch <- prometheus.MustNewConstMetric(descDead, prometheus.CounterValue, float64(t.DeadLettered), lv...)
		ch <- prometheus.MustNewConstMetric(descHandled, prometheus.CounterValue, float64(t.Handled), lv...)
		ch <- prometheus.MustNewConstMetric(descSubErrs, prometheus.CounterValue, float64(t.RedisErrors), lv...)
		ch <- prometheus.MustNewConstMetric(descReclaim, prometheus.CounterValue, float64(t.Reclaimed), lv...)
	}
}

// groupCollector reads every topic's groups from Redis at scrape time
// (cached for 5 s, bounded by 5 s), so lag and pending cover every consumer,
// not only the gateway's.
type groupCollector struct {
	c      *herald.Client
	mu     sync.Mutex
	at     time.Time
	cached []prometheus.Metric
}

func (gc *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range append([]*prometheus.Desc{descLag, descPending, descSched, descOldest, descDLQ, descLength, descScrapeOK}, timeDescs...) {
		ch <- d
	}
}

func (gc *groupCollector) Collect(ch chan<- prometheus.Metric) {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	if time.Since(gc.at) > 5*time.Second || gc.cached == nil {
		gc.cached = gc.read()
		gc.at = time.Now()
	}
	for _, m := range gc.cached {
		ch <- m
	}
}

func (gc *groupCollector) read() []prometheus.Metric {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []prometheus.Metric
	ok := 1.0
	topics, err := gc.c.Topics(ctx)
	if err != nil {
		ok = 0
	}
	for _, t := range topics {
		out = append(out, prometheus.MustNewConstMetric(descDLQ, prometheus.GaugeValue, float64(t.DeadLetters), t.Name),
			prometheus.MustNewConstMetric(descLength, prometheus.GaugeValue, float64(t.Length), t.Name))
		gs, err := groups(ctx, gc.c, t.Name)
		if err != nil {
			ok = 0
			continue
		}
		for _, g := range gs {
			out = append(out,
				prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(g.Lag), t.Name, g.Name),
				prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(g.Pending), t.Name, g.Name),
				prometheus.MustNewConstMetric(descSched, prometheus.GaugeValue, float64(g.ScheduledRetries), t.Name, g.Name),
				prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, g.OldestPending.Seconds(), t.Name, g.Name))
		}
		tm, tok := timeMetrics(ctx, gc.c, t.Name) // admin_time.go
		if !tok {
			ok = 0
		}
		out = append(out, tm...)
	}
	return append(out, prometheus.MustNewConstMetric(descScrapeOK, prometheus.GaugeValue, ok))
}

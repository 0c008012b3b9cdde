package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldbus/herald"
)

// Time on the bus over HTTP: delayed publishes, scheduled events, group
// seek and per-group losses (docs/http-api.md, "Time").

// Delivery-time attributes of a published event: the CloudEvents extension
// attributes deliverat (RFC 3339) and deliverdelay (a duration such as "10s"),
// which the CloudEvents decoders keep as headers, and the envelope fields
// deliver_at and delay, which the envelope decoder stores the same way.
// They are taken out of the event before it is published.
const (
	attrDeliverAt = "deliverat"
	attrDelay     = "deliverdelay"
)

// deliveryTimes returns each event's delivery time (zero: at once), from
// its deliverat/delay attributes or the request's deliver_at/delay query
// parameters, and removes the attributes; nil when no event is delayed.
func deliveryTimes(r *http.Request, evs []herald.Event) ([]time.Time, error) {
	q := r.URL.Query()
	def, err := parseDelivery(q.Get("deliver_at"), q.Get("delay"), "query parameter ")
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for i := range evs {
		due := def
		if h := evs[i].Headers; h != nil {
			at, okA := h[attrDeliverAt]
			d, okD := h[attrDelay]
			if okA || okD {
				if due, err = parseDelivery(at, d, ""); err != nil {
					return nil, badRequest("event %d: %v", i, err)
				}
				delete(h, attrDeliverAt)
				delete(h, attrDelay)
			}
		}
		if !due.IsZero() && out == nil {
			out = make([]time.Time, len(evs))
		}
		if out != nil {
			out[i] = due
		}
	}
	return out, nil
}

// maxDelayMillis is the longest delay in milliseconds: a longer one does
// not fit a time.Duration.
const maxDelayMillis = math.MaxInt64 / int64(time.Millisecond)

// parseMillis reads a delay given as a number of milliseconds: an
// integer, or a JSON number of the envelope as fmt prints it (1e+06). big
// reports a number beyond maxDelayMillis (which a time.Duration cannot
// hold); any negative number reads as -1.
func parseMillis(s string) (ms int64, ok, big bool) {
	f, err := strconv.ParseFloat(s, 64)
	if n, ierr := strconv.ParseInt(s, 10, 64); ierr == nil {
		f, err = float64(n), nil
		if n >= 0 && n <= maxDelayMillis {
			return n, true, false
		}
	}
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		return 0, false, false
	case f < 0:
		return -1, true, false
	case f > float64(maxDelayMillis):
		return 0, false, true
	case f != math.Trunc(f):
		return 0, false, false
	}
	return int64(f), true, false
}

// parseDelivery reads a deliver_at (RFC 3339) or delay (Go duration, or
// milliseconds as a number) value; both empty is the zero time.
func parseDelivery(at, delay, where string) (time.Time, error) {
	switch {
	case at != "" && delay != "":
		return time.Time{}, badRequest("both %sdeliver_at and %sdelay are set; send one", where, where)
	case at != "":
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return time.Time{}, badRequest("%sdeliver_at %q is not an RFC 3339 time; use e.g. 2026-01-02T15:04:05Z", where, at)
		}
		return t, nil
	case delay != "":
		d, err := time.ParseDuration(delay)
		if err != nil {
			ms, ok, big := parseMillis(delay)
			if big {
				return time.Time{}, badRequest("%sdelay %q is too large; use at most %d milliseconds (%s)", where, delay, maxDelayMillis, time.Duration(math.MaxInt64))
			}
			if !ok {
				return time.Time{}, badRequest("%sdelay %q is not a duration; use e.g. 10s, 5m or a number of milliseconds", where, delay)
			}
			d = time.Duration(ms) * time.Millisecond
		}
		if d < 0 {
			return time.Time{}, badRequest("%sdelay %q is negative", where, delay)
		}
		return time.Now().Add(d), nil
	}
	return time.Time{}, nil
}

// TimedPositionJSON is a position in the answer to a publish with delivery
// times: a delayed event has no stream position yet (stream_id is empty)
// and says when it is due.
type TimedPositionJSON struct {
	PositionJSON
	DeliverAt *time.Time `json:"deliver_at,omitempty"`
}

// TimedPublishResponse is the body of a publish answer when some event was delayed.
type TimedPublishResponse struct {
	Topic     string              `json:"topic"`
	Positions []TimedPositionJSON `json:"positions"`
}

// publishTimed publishes a request whose events have delivery times: the
// delayed ones one by one into the topic's schedule, the others as one batch.
func (g *Gateway) publishTimed(w http.ResponseWriter, r *http.Request, topic string, evs []herald.Event, dues []time.Time, opts []herald.PublishOption) error {
	resp := TimedPublishResponse{Topic: topic, Positions: make([]TimedPositionJSON, len(evs))}
	var now []herald.Event
	var nowAt []int
	for i := range evs {
		if dues[i].IsZero() {
			now, nowAt = append(now, evs[i]), append(nowAt, i)
			continue
		}
		s, err := g.c.Schedule(r.Context(), topic, evs[i], dues[i], opts...)
		if err != nil {
			return err
		}
		due := s.Due.UTC()
		resp.Positions[i] = TimedPositionJSON{PositionJSON: PositionJSON{Position: strconv.Itoa(s.Partition) + "/", Partition: s.Partition, EventID: s.ID}, DeliverAt: &due}
	}
	if len(now) > 0 {
		ps, err := g.c.PublishBatch(r.Context(), topic, now, opts...)
		if err != nil && ps == nil {
			return err
		}
		for k, p := range ps {
			resp.Positions[nowAt[k]] = TimedPositionJSON{PositionJSON: PositionJSON{Position: p.String(), Partition: p.Partition, StreamID: p.ID,
				EventID: now[k].ID, Duplicate: p.Duplicate, Degraded: p.Degraded}}
		}
		if err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// ScheduledEventJSON is a delayed event in the admin API.
type ScheduledEventJSON struct {
	EventJSON
	DeliverAt time.Time `json:"deliver_at"`
}

func (g *Gateway) handleScheduled(w http.ResponseWriter, r *http.Request, _ *principal) error {
	q := r.URL.Query()
	f := herald.ScheduleFilter{ID: q.Get("id")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return badRequest("limit %q is not a positive number", l)
		}
		f.Limit = n
	}
	topic := r.PathValue("topic")
	evs, total, err := g.c.ScheduledEvents(r.Context(), topic, f)
	if err != nil {
		return err
	}
	out := make([]ScheduledEventJSON, len(evs))
	for i := range evs {
		j := envelope(&evs[i].Event)
		p := evs[i].Partition
		j.Topic, j.Partition = topic, &p
		out[i] = ScheduledEventJSON{EventJSON: j, DeliverAt: evs[i].Due.UTC()}
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "total": total, "events": out})
	return nil
}

func (g *Gateway) handleCancelScheduled(w http.ResponseWriter, r *http.Request, _ *principal) error {
	topic, id := r.PathValue("topic"), r.PathValue("id")
	ok, err := g.c.CancelScheduled(r.Context(), topic, id)
	if err != nil {
		return err
	}
	// 200 either way, so that a retried DELETE is not an error: "cancelled"
	// is false when no such event waits (delivered, cancelled before, or
	// never scheduled).
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "cancelled": ok})
	return nil
}

// SeekRequest is the body of POST /v1/topics/{topic}/groups/{group}/seek.
type SeekRequest struct {
	// To is "beginning", "end", a position "<partition>/<ms>-<seq>" or an RFC 3339 time.
	To string `json:"to"`
}

func (g *Gateway) handleSeek(w http.ResponseWriter, r *http.Request, _ *principal) error {
	var req SeekRequest
	d := json.NewDecoder(io.LimitReader(r.Body, 4096))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil || req.To == "" {
		return badRequest(`the body must be {"to": "beginning" | "end" | "<partition>/<ms>-<seq>" | RFC 3339 time}`)
	}
	target, err := herald.ParseSeekTarget(req.To)
	if err != nil {
		return err
	}
	topic, group := r.PathValue("topic"), r.PathValue("group")
	res, err := g.c.SeekGroup(r.Context(), topic, group, target)
	if err != nil {
		return err
	}
	parts := make([]map[string]any, len(res.Partitions))
	for i, p := range res.Partitions {
		parts[i] = map[string]any{"partition": p.Partition, "last_delivered_id": p.LastDeliveredID, "dropped": p.Dropped}
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "group": group, "to": target.String(), "dropped": res.Dropped, "partitions": parts})
	return nil
}

// GroupLossJSON is what a group lost: events trimmed by hard caps before it
// handled them, and its dead letters.
type GroupLossJSON struct {
	Group            string `json:"group"`
	TrimmedUnread    int64  `json:"trimmed_unread"`
	TrimmedPending   int64  `json:"trimmed_pending"`
	DeadLetters      int64  `json:"dead_letters"`
	DeadLettersExact bool   `json:"dead_letters_exact"`
}

func (g *Gateway) handleLosses(w http.ResponseWriter, r *http.Request, _ *principal) error {
	topic := r.PathValue("topic")
	ls, err := g.c.GroupLosses(r.Context(), topic)
	if err != nil {
		return err
	}
	out := make([]GroupLossJSON, len(ls))
	for i, l := range ls {
		out[i] = GroupLossJSON{Group: l.Group, TrimmedUnread: l.TrimmedUnread, TrimmedPending: l.TrimmedPending,
			DeadLetters: l.DeadLetters, DeadLettersExact: l.DeadLettersExact}
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "groups": out})
	return nil
}

// Metrics of time on the bus, read with the group metrics (metrics.go).
var (
	descTrimmedUnread  = prometheus.NewDesc("herald_group_trimmed_unread", "Events hard retention caps trimmed before the group read them.", []string{"topic", "group"}, nil)
	descTrimmedPending = prometheus.NewDesc("herald_group_trimmed_pending", "Events hard retention caps trimmed while the group had them pending (read, not acknowledged).", []string{"topic", "group"}, nil)
	descGroupDead      = prometheus.NewDesc("herald_group_dead_letters", "Dead letters of the group still stored.", []string{"topic", "group"}, nil)
	descScheduled      = prometheus.NewDesc("herald_topic_scheduled", "Delayed events waiting in the topic's schedule.", []string{"topic"}, nil)
	timeDescs          = []*prometheus.Desc{descTrimmedUnread, descTrimmedPending, descGroupDead, descScheduled}
)

// timeMetrics reads the per-group losses and the scheduled events of a
// topic; ok is false when something could not be read.
func timeMetrics(ctx context.Context, c *herald.Client, topic string) (out []prometheus.Metric, ok bool) {
	ok = true
	if ls, err := c.GroupLosses(ctx, topic); err == nil {
		for _, l := range ls {
			out = append(out,
				prometheus.MustNewConstMetric(descTrimmedUnread, prometheus.GaugeValue, float64(l.TrimmedUnread), topic, l.Group),
				prometheus.MustNewConstMetric(descTrimmedPending, prometheus.GaugeValue, float64(l.TrimmedPending), topic, l.Group),
				prometheus.MustNewConstMetric(descGroupDead, prometheus.GaugeValue, float64(l.DeadLetters), topic, l.Group))
		}
	} else {
		ok = false
	}
	if _, total, err := c.ScheduledEvents(ctx, topic, herald.ScheduleFilter{Limit: 1}); err == nil {
		out = append(out, prometheus.MustNewConstMetric(descScheduled, prometheus.GaugeValue, float64(total), topic))
	} else {
		ok = false
	}
	return out, ok
}

package gateway

import (
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/heraldbus/herald"
)

// PositionJSON is where one published event was stored.
type PositionJSON struct {
	// Position is "<partition>/<stream id>", the SSE id of the event.
	Position  string `json:"position"`
	Partition int    `json:"partition"`
	StreamID  string `json:"stream_id"`
	// EventID is the event id when the caller set it (body or Idempotency-Key).
	EventID string `json:"event_id,omitempty"`
	// Duplicate: an event with this id was already stored at Position.
	Duplicate bool `json:"duplicate,omitempty"`
	// Degraded: a replicated publish got fewer replica acknowledgements than asked.
	Degraded bool `json:"degraded,omitempty"`
}

// PublishResponse is the body of a successful publish.
type PublishResponse struct {
	Topic     string         `json:"topic"`
	Positions []PositionJSON `json:"positions"`
}

var traceparentRE = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// decodeRequestEvents turns a publish request into events according to its
// content type: CloudEvents structured, batch or binary mode, the Herald
// JSON envelope (one object or an array), or a plain body (one event).
func (g *Gateway) decodeRequestEvents(r *http.Request) ([]herald.Event, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	mt = strings.ToLower(mt)
	q := r.URL.Query()
	raw := q.Get("raw") == "true" || q.Get("raw") == "1"
	var evs []herald.Event
	switch {
	case r.Header.Get("ce-specversion") != "":
		ev, err := DecodeBinary(r.Header, body)
		if err != nil {
			return nil, badRequest("CloudEvents binary mode: %v", err)
		}
		evs = []herald.Event{ev}
	case mt == mediaCE:
		ev, err := DecodeCloudEvent(body)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		evs = []herald.Event{ev}
	case mt == mediaCEBatch:
		if evs, err = DecodeCloudEventBatch(body); err != nil {
			return nil, badRequest("%v", err)
		}
	case mt == mediaJSON && !raw:
		if evs, err = DecodeEnvelopes(body); err != nil {
			return nil, badRequest("%v", err)
		}
	default:
		if len(body) == 0 {
			return nil, badRequest("the body is empty; send the event's payload, an envelope with Content-Type application/json, or a CloudEvent")
		}
		ev := herald.Event{Data: body, ContentType: ct}
		ev.Type, ev.Key, ev.Source, ev.Subject = q.Get("type"), q.Get("key"), q.Get("source"), q.Get("subject")
		evs = []herald.Event{ev}
	}
	if len(evs) == 0 {
		return nil, badRequest("the batch is empty; send at least one event")
	}
	if len(evs) > g.cfg.MaxBatch {
		return nil, errorf(http.StatusRequestEntityTooLarge, CodePayloadTooLarge,
			"%d events in one request; send at most %d (max_batch in the server config)", len(evs), g.cfg.MaxBatch)
	}
	// Idempotency-Key names the event (or, for a batch, event i is KEY:i).
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if len(key) > 180 {
			return nil, badRequest("Idempotency-Key is %d bytes long; use at most 180", len(key))
		}
		for i := range evs {
			if evs[i].ID != "" {
				continue
			}
			if len(evs) == 1 {
				evs[0].ID = key
			} else {
				evs[i].ID = key + ":" + strconv.Itoa(i)
			}
		}
	}
	// W3C trace context travels in the event's headers.
	tp := strings.TrimSpace(r.Header.Get("traceparent"))
	if tp != "" && traceparentRE.MatchString(tp) && tp[:2] != "ff" {
		ts := r.Header.Get("tracestate")
		for i := range evs {
			if _, ok := evs[i].Headers["traceparent"]; ok {
				continue
			}
			h := make(map[string]string, len(evs[i].Headers)+2)
			for k, v := range evs[i].Headers {
				h[k] = v
			}
			h["traceparent"] = tp
			if ts != "" {
				h["tracestate"] = ts
			}
			evs[i].Headers = h
		}
	}
	return evs, nil
}

func publishOptions(r *http.Request) ([]herald.PublishOption, error) {
	q := r.URL.Query()
	var opts []herald.PublishOption
	if p := q.Get("partition"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, badRequest("partition %q is not a partition number; use 0, 1, ...", p)
		}
		opts = append(opts, herald.ToPartition(n))
	}
	if d := q.Get("durability"); d != "" {
		dur, err := herald.ParseDurability(d)
		if err != nil {
			return nil, err
		}
		opts = append(opts, herald.WithDurability(dur))
	}
	if a := q.Get("atomic"); a == "true" || a == "1" {
		opts = append(opts, herald.Atomic())
	}
	return opts, nil
}

func (g *Gateway) handlePublish(w http.ResponseWriter, r *http.Request, _ *principal) error {
	topic := r.PathValue("topic")
	if err := herald.ValidateName("topic", topic); err != nil {
		return err
	}
	evs, err := g.decodeRequestEvents(r)
	if err != nil {
		return err
	}
	opts, err := publishOptions(r)
	if err != nil {
		return err
	}
	if dues, err := deliveryTimes(r, evs); err != nil { // admin_time.go
		return err
	} else if dues != nil {
		return g.publishTimed(w, r, topic, evs, dues, opts)
	}
	start := time.Now()
	ps, err := g.c.PublishBatch(r.Context(), topic, evs, opts...)
	g.metrics.observePublish(topic, len(evs), ps, err, time.Since(start))
	if err != nil && ps == nil {
		return err
	}
	resp := PublishResponse{Topic: topic, Positions: make([]PositionJSON, len(ps))}
	for i, p := range ps {
		resp.Positions[i] = PositionJSON{Position: p.String(), Partition: p.Partition, StreamID: p.ID, EventID: evs[i].ID,
			Duplicate: p.Duplicate, Degraded: p.Degraded}
	}
	if err != nil { // ErrNotReplicated: stored, but the caller asked to fail
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// RoutedResponse is the body of POST /v1/events.
type RoutedResponse struct {
	Matched    []string         `json:"matched"`
	Default    bool             `json:"default"`
	Deliveries []DeliveryResult `json:"deliveries"`
}

// DeliveryResult is what routing one event to one destination gave.
type DeliveryResult struct {
	Destination string `json:"destination"`
	Position    string `json:"position,omitempty"`
	Duplicate   bool   `json:"duplicate,omitempty"`
	Receivers   *int   `json:"receivers,omitempty"`
	Error       string `json:"error,omitempty"`
}

func (g *Gateway) handleRouted(w http.ResponseWriter, r *http.Request, p *principal) error {
	if g.cfg.Router == nil {
		return errorf(http.StatusNotFound, CodeNoRules, "no routing rules are loaded; start the server with --rules RULES.yaml, or publish to /v1/topics/{topic}/events")
	}
	evs, err := g.decodeRequestEvents(r)
	if err != nil {
		return err
	}
	if len(evs) != 1 {
		return badRequest("POST /v1/events takes one event; send %d requests, or publish the batch to a topic", len(evs))
	}
	ev := evs[0]
	res := g.cfg.Router.Route(&ev)
	for _, d := range res.Destinations {
		act, what := actPublish, d.Name
		if d.Channel {
			what = "channel:" + d.Name
		}
		if !p.can(act, what) {
			return errorf(http.StatusForbidden, CodeForbidden, "API key %q may not publish to %s, where the rules route this event; add a matching publish pattern to the key", p.name, d)
		}
	}
	if len(res.Destinations) == 0 {
		writeJSON(w, http.StatusOK, RoutedResponse{Matched: nonNil(res.Matched), Default: res.Default, Deliveries: []DeliveryResult{}})
		return nil
	}
	start := time.Now()
	res, dls, err := g.cfg.Router.Publish(r.Context(), g.c, ev)
	out := RoutedResponse{Matched: nonNil(res.Matched), Default: res.Default, Deliveries: make([]DeliveryResult, 0, len(dls))}
	for _, d := range dls {
		dr := DeliveryResult{Destination: d.Destination.String()}
		if d.Destination.Channel {
			n := d.Receivers
			dr.Receivers = &n
		} else {
			g.metrics.observePublish(d.Destination.Name, 1, []herald.Position{d.Position}, d.Err, time.Since(start))
			if d.Err == nil {
				dr.Position, dr.Duplicate = d.Position.String(), d.Position.Duplicate
			}
		}
		if d.Err != nil {
			dr.Error = d.Err.Error()
		}
		out.Deliveries = append(out.Deliveries, dr)
	}
	if err != nil {
		ae := g.classify(err)
		writeJSON(w, ae.Status, struct {
			RoutedResponse
			Error errorDetail `json:"error"`
		}{out, errorDetail{Code: ae.Code, Message: ae.Message}})
		return nil
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// BroadcastResponse is the body of POST /v1/channels/{channel}/messages.
type BroadcastResponse struct {
	Channel string `json:"channel"`
	// Receivers is the number of subscribers the Redis node counted (on a
	// cluster, the subscribers on that node).
	Receivers int `json:"receivers"`
}

func (g *Gateway) handleBroadcast(w http.ResponseWriter, r *http.Request, _ *principal) error {
	ch := r.PathValue("channel")
	if err := validChannel(ch); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	n, err := g.c.Broadcast(r.Context(), ch, body)
	if err != nil {
		return err
	}
	g.metrics.channelMessages.WithLabelValues("published").Inc()
	writeJSON(w, http.StatusOK, BroadcastResponse{Channel: ch, Receivers: n})
	return nil
}

func validChannel(ch string) error {
	if ch == "" || len(ch) > 1024 {
		return badRequest("channel name must be 1-1024 bytes long")
	}
	for i := 0; i < len(ch); i++ {
		if ch[i] < 0x21 || ch[i] == 0x7f {
			return badRequest("channel name %q has a space or control character at byte %d; use printable characters", ch, i)
		}
	}
	return nil
}

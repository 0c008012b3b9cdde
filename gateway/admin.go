package gateway

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/heraldbus/herald"
)

// TopicJSON describes a topic in the admin API.
type TopicJSON struct {
	Name        string          `json:"name"`
	Partitions  int             `json:"partitions"`
	Length      int64           `json:"length"`
	DeadLetters int64           `json:"dead_letters"`
	MemoryBytes int64           `json:"memory_bytes"`
	Created     time.Time       `json:"created"`
	Config      TopicConfigJSON `json:"config"`
	Parts       []PartitionJSON `json:"partition_info,omitempty"`
}

// TopicConfigJSON is a topic's configuration (PUT /v1/topics/{topic} takes it too).
type TopicConfigJSON struct {
	Partitions    int    `json:"partitions,omitempty"`
	MaxLen        int64  `json:"max_len,omitempty"`
	MaxAge        string `json:"max_age,omitempty"`
	DedupeWindow  string `json:"dedupe_window,omitempty"`
	DedupeAll     bool   `json:"dedupe_all,omitempty"`
	MaxEventBytes int    `json:"max_event_bytes,omitempty"`
	Durability    string `json:"durability,omitempty"`
	TrimAcked     bool   `json:"trim_acked,omitempty"` // trim what every group acknowledged (admin_time.go)
}

// PartitionJSON describes one partition.
type PartitionJSON struct {
	Partition   int    `json:"partition"`
	Stream      string `json:"stream"`
	Slot        int    `json:"slot"`
	Node        string `json:"node"`
	Length      int64  `json:"length"`
	FirstID     string `json:"first_id,omitempty"`
	LastID      string `json:"last_id,omitempty"`
	DeadLetters int64  `json:"dead_letters"`
	MemoryBytes int64  `json:"memory_bytes"` // MEMORY USAGE of the partition stream
}

func topicJSON(ti herald.TopicInfo, parts bool) TopicJSON {
	t := TopicJSON{Name: ti.Name, Partitions: ti.Config.Partitions, Length: ti.Length, DeadLetters: ti.DeadLetters,
		MemoryBytes: ti.MemoryBytes, Created: ti.Created, Config: TopicConfigJSON{Partitions: ti.Config.Partitions,
			MaxLen: ti.Config.MaxLen, DedupeWindow: ti.Config.DedupeWindow.String(), DedupeAll: ti.Config.DedupeAll,
			MaxEventBytes: ti.Config.MaxEventBytes, Durability: ti.Config.Durability.String(), TrimAcked: ti.Config.TrimAcked}}
	if ti.Config.MaxAge > 0 {
		t.Config.MaxAge = ti.Config.MaxAge.String()
	}
	if parts {
		for _, p := range ti.Partitions {
			t.Parts = append(t.Parts, PartitionJSON{Partition: p.Partition, Stream: p.Stream, Slot: p.Slot, Node: p.Node,
				Length: p.Length, FirstID: p.FirstID, LastID: p.LastID, DeadLetters: p.DeadLetters, MemoryBytes: p.MemoryBytes})
		}
	}
	return t
}

func (g *Gateway) handleTopics(w http.ResponseWriter, r *http.Request, p *principal) error {
	ts, err := g.c.Topics(r.Context())
	if err != nil {
		return err
	}
	out := []TopicJSON{}
	for _, t := range ts {
		if p.can(actAdmin, t.Name) {
			out = append(out, topicJSON(t, false))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"topics": out})
	return nil
}

func (g *Gateway) handleTopicInfo(w http.ResponseWriter, r *http.Request, _ *principal) error {
	ti, err := g.c.TopicInfo(r.Context(), r.PathValue("topic"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, topicJSON(ti, true))
	return nil
}

func (g *Gateway) handleCreateTopic(w http.ResponseWriter, r *http.Request, _ *principal) error {
	name := r.PathValue("topic")
	var in TopicConfigJSON
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(&in); err != nil && !errors.Is(err, errEOF) {
		if tooLarge(err) {
			return err
		}
		return badRequest("topic config: %v; send {\"partitions\": N, \"max_len\": N, \"max_age\": \"24h\", ...} or an empty body", err)
	}
	cfg := herald.TopicConfig{Partitions: in.Partitions, MaxLen: in.MaxLen, DedupeAll: in.DedupeAll, MaxEventBytes: in.MaxEventBytes, TrimAcked: in.TrimAcked}
	for _, f := range []struct {
		s   string
		dst *time.Duration
		n   string
	}{{in.MaxAge, &cfg.MaxAge, "max_age"}, {in.DedupeWindow, &cfg.DedupeWindow, "dedupe_window"}} {
		if f.s == "" {
			continue
		}
		v, err := time.ParseDuration(f.s)
		if err != nil {
			return badRequest("%s %q is not a duration; use e.g. 90s, 24h", f.n, f.s)
		}
		*f.dst = v
	}
	dur, err := herald.ParseDurability(in.Durability)
	if err != nil {
		return err
	}
	cfg.Durability = dur
	if err := g.c.CreateTopic(r.Context(), name, cfg); err != nil {
		return err
	}
	ti, err := g.c.TopicInfo(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, topicJSON(ti, true))
	return nil
}

func (g *Gateway) handleDeleteTopic(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := g.c.DeleteTopic(r.Context(), r.PathValue("topic")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": r.PathValue("topic")})
	return nil
}

// GroupJSON describes a consumer group.
type GroupJSON struct {
	Name             string  `json:"name"`
	Consumers        int64   `json:"consumers"`
	Pending          int64   `json:"pending"`
	Lag              int64   `json:"lag"`
	ScheduledRetries int64   `json:"scheduled_retries"`
	OldestPending    float64 `json:"oldest_pending_seconds"`
	LagSeconds       float64 `json:"lag_seconds"` // age of the oldest event not yet delivered
	// LagUnknown says why Lag is -1; Members are the live consumers of an
	// ordered group; Partitions show each partition's owner and lease.
	LagUnknown   string               `json:"lag_unknown,omitempty"`
	LagEstimated bool                 `json:"lag_estimated,omitempty"`
	Members      []string             `json:"members"`
	Partitions   []GroupPartitionJSON `json:"partitions"`
}

// GroupPartitionJSON is a group's state on one partition: the consumer
// holding its lease (ordered subscriptions), the lease's age and time left,
// pending entries and lag.
type GroupPartitionJSON struct {
	Partition  int     `json:"partition"`
	Owner      string  `json:"owner"`
	LeaseAge   float64 `json:"lease_age_seconds"`
	LeaseLeft  float64 `json:"lease_left_seconds"`
	Pending    int64   `json:"pending"`
	Lag        int64   `json:"lag"`
	LagUnknown string  `json:"lag_unknown,omitempty"`
	LagSeconds float64 `json:"lag_seconds"`
}

// groups is Client.Groups, except that a topic whose partition streams do
// not exist yet (created, nothing published) has no groups rather than an
// error (XINFO GROUPS answers "no such key" for a missing stream).
func groups(ctx context.Context, c *herald.Client, topic string) ([]herald.GroupInfo, error) {
	gs, err := c.Groups(ctx, topic)
	if err == nil || errors.Is(err, herald.ErrTopicNotFound) {
		return gs, err
	}
	ti, ierr := c.TopicInfo(ctx, topic)
	if ierr != nil {
		return nil, err
	}
	for _, p := range ti.Partitions {
		if p.LastID != "" || p.Length > 0 {
			return nil, err
		}
	}
	return nil, nil
}

func (g *Gateway) handleGroups(w http.ResponseWriter, r *http.Request, _ *principal) error {
	gs, err := groups(r.Context(), g.c, r.PathValue("topic"))
	if err != nil {
		return err
	}
	out := make([]GroupJSON, len(gs))
	for i, gi := range gs {
		out[i] = GroupJSON{Name: gi.Name, Consumers: gi.Consumers, Pending: gi.Pending, Lag: gi.Lag,
			ScheduledRetries: gi.ScheduledRetries, OldestPending: gi.OldestPending.Seconds(), LagSeconds: gi.LagAge.Seconds(),
			LagUnknown: gi.LagUnknown, LagEstimated: gi.LagEstimated, Members: append([]string{}, gi.Members...), Partitions: make([]GroupPartitionJSON, len(gi.Partitions))}
		for j, p := range gi.Partitions {
			out[i].Partitions[j] = GroupPartitionJSON{Partition: p.Partition, Owner: p.Owner, LeaseAge: p.LeaseAge.Seconds(),
				LeaseLeft: p.LeaseLeft.Seconds(), Pending: p.Pending, Lag: p.Lag, LagUnknown: p.LagUnknown, LagSeconds: p.LagAge.Seconds()}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": r.PathValue("topic"), "groups": out})
	return nil
}

func (g *Gateway) handleDeleteGroup(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if err := g.c.DeleteGroup(r.Context(), r.PathValue("topic"), r.PathValue("group")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": r.PathValue("group")})
	return nil
}

// DeadLetterJSON is a dead letter in the admin API.
type DeadLetterJSON struct {
	EventJSON
	Error    string    `json:"error"`
	Attempts int       `json:"attempts"`
	Origin   string    `json:"origin"`
	Failed   time.Time `json:"failed"`
}

func (g *Gateway) handleDeadLetters(w http.ResponseWriter, r *http.Request, _ *principal) error {
	q, err := parseQuery(r)
	if err != nil {
		return err
	}
	topic := r.PathValue("topic")
	dls, err := g.c.DeadLetters(r.Context(), topic, q)
	if err != nil {
		return err
	}
	out := make([]DeadLetterJSON, len(dls))
	for i, dl := range dls {
		m := &herald.Message{Event: dl.Event, Topic: topic, Group: dl.Group, Partition: dl.Partition, Position: dl.Position}
		out[i] = DeadLetterJSON{EventJSON: messageEnvelope(m), Error: dl.Error, Attempts: dl.Attempts,
			Origin: fmt.Sprintf("%d/%s", dl.Partition, dl.Origin), Failed: dl.Failed}
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "dead_letters": out})
	return nil
}

// RedriveRequest selects dead letters to send back to their groups (or to
// delete); the query parameters of the list endpoint work as well.
type RedriveRequest struct {
	Group      string   `json:"group,omitempty"`
	Positions  []string `json:"positions,omitempty"`
	Partitions []int    `json:"partitions,omitempty"`
	From       string   `json:"from,omitempty"`
	To         string   `json:"to,omitempty"`
	Limit      int      `json:"limit,omitempty"`
}

func (g *Gateway) redriveQuery(r *http.Request) (herald.Query, error) {
	q, err := parseQuery(r)
	if err != nil {
		return q, err
	}
	var in RedriveRequest
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(&in); err != nil && !errors.Is(err, errEOF) {
		if tooLarge(err) {
			return q, err
		}
		return q, badRequest("selection: %v; send {\"group\": G, \"positions\": [...], \"from\": ID, \"to\": ID, \"limit\": N} or an empty body for all", err)
	}
	if in.Group != "" {
		q.Group = in.Group
	}
	q.IDs = append(q.IDs, in.Positions...)
	q.Partitions = append(q.Partitions, in.Partitions...)
	if in.From != "" {
		q.From = in.From
	}
	if in.To != "" {
		q.To = in.To
	}
	if in.Limit > 0 {
		q.Limit = in.Limit
	}
	if q.Limit == 0 {
		q.Limit = 1000
	}
	return q, nil
}

func (g *Gateway) handleRedrive(w http.ResponseWriter, r *http.Request, _ *principal) error {
	q, err := g.redriveQuery(r)
	if err != nil {
		return err
	}
	n, err := g.c.RedriveDeadLetters(r.Context(), r.PathValue("topic"), q)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int{"redriven": n})
	return nil
}

func (g *Gateway) handleDeleteDeadLetters(w http.ResponseWriter, r *http.Request, _ *principal) error {
	q, err := g.redriveQuery(r)
	if err != nil {
		return err
	}
	n, err := g.c.DeleteDeadLetters(r.Context(), r.PathValue("topic"), q)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int{"deleted": n})
	return nil
}

func (g *Gateway) handleChannels(w http.ResponseWriter, r *http.Request, _ *principal) error {
	chs, err := g.c.Channels(r.Context(), r.URL.Query().Get("pattern"))
	if err != nil {
		return err
	}
	counts, err := g.c.NumSub(r.Context(), chs...)
	if err != nil {
		return err
	}
	pats, err := g.c.NumPat(r.Context())
	if err != nil {
		return err
	}
	type ch struct {
		Name        string `json:"name"`
		Subscribers int64  `json:"subscribers"`
	}
	out := make([]ch, len(chs))
	for i, c := range chs {
		out[i] = ch{Name: c, Subscribers: counts[c]}
	}
	writeJSON(w, http.StatusOK, map[string]any{"channels": out, "pattern_subscriptions": pats})
	return nil
}

func (g *Gateway) handleHealth(w http.ResponseWriter, r *http.Request, _ *principal) error {
	h, err := g.c.Health(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, healthJSON(h)) // admin_dashboard.go
	return nil
}

func (g *Gateway) handleHealthz(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if g.closing.Load() {
		return errorf(http.StatusServiceUnavailable, CodeShuttingDown, "shutting down")
	}
	if g.cfg.Live != nil {
		if err := g.cfg.Live(r.Context()); err != nil {
			return errorf(http.StatusServiceUnavailable, CodeUnavailable, "%v", err)
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleReadyz answers 200 when Redis answers on every node (and, on a
// cluster, every node has a role and no partition is failing).
func (g *Gateway) handleReadyz(w http.ResponseWriter, r *http.Request, _ *principal) error {
	if g.closing.Load() {
		return errorf(http.StatusServiceUnavailable, CodeShuttingDown, "shutting down")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if _, err := g.c.NumPat(ctx); err != nil {
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "Redis is not reachable: %v", err)
	}
	if g.cfg.Ready != nil {
		if err := g.cfg.Ready(ctx); err != nil {
			return errorf(http.StatusServiceUnavailable, CodeUnavailable, "%v", err)
		}
	}
	h, err := g.c.Health(ctx)
	if err != nil {
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "Redis health: %v", err)
	}
	if len(h.FailingPartitions) > 0 {
		fp := h.FailingPartitions[0]
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "%d partitions are failing (first: %s/%d since %s); a failover may be in progress",
			len(h.FailingPartitions), fp.Topic, fp.Partition, fp.Since.Format(time.RFC3339))
	}
	if len(h.Nodes) > 1 {
		for _, n := range h.Nodes {
			if n.Role == "" {
				return errorf(http.StatusServiceUnavailable, CodeUnavailable, "Redis node %s does not answer: %s", n.Addr, n.Err)
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "nodes": len(h.Nodes)})
	return nil
}

//go:embed openapi.json
var openAPI []byte

func (g *Gateway) handleOpenAPI(w http.ResponseWriter, r *http.Request, _ *principal) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPI)
	return nil
}

// OpenAPI returns the OpenAPI 3 document served at /v1/openapi.json.
func OpenAPI() []byte { return openAPI }

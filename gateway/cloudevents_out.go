package gateway

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldbus/herald"
)

// CloudEvents output: structured JSON (SSE, WebSocket, webhooks) and HTTP
// binary mode (webhooks with format cloudevents-binary).

// Delivery extensions of CloudEvents output (lower-case alphanumeric, as
// CloudEvents attribute names must be): where the event is stored, and for
// a consumer group's delivery, the group and the attempt, so a client can
// acknowledge it with the position.
const (
	ceExtPosition = "heraldposition" // "<partition>/<stream id>", what ack and nack take
	ceExtTopic    = "heraldtopic"
	ceExtGroup    = "heraldgroup"
	ceExtAttempt  = "heraldattempt" // integer, 1 for the first delivery
)

// eventID is the id of a delivered event: its own, or, for an event stored
// without one (appended by another producer straight into the stream), one
// derived from its position, "<topic>/<partition>/<stream id>", stable
// across reads and unique in the namespace.
func eventID(m *herald.Message) string {
	if m.ID != "" || m.Position == "" {
		return m.ID
	}
	return m.Topic + "/" + strconv.Itoa(m.Partition) + "/" + m.Position
}

// EncodeCloudEvent encodes an event in structured JSON mode. Headers whose
// names are valid CloudEvents attribute names become extension attributes
// (integers and booleans stored from CloudEvents keep their type); others
// are left out (the Herald envelope keeps them all).
func EncodeCloudEvent(ev *herald.Event) []byte {
	b, _ := json.Marshal(ceMap(ev, ev.ID))
	return b
}

// encodeCloudEventMessage encodes a delivered message in structured JSON
// mode with its delivery extensions and, when it has none, an id derived
// from its position.
func encodeCloudEventMessage(m *herald.Message) []byte {
	attrs := ceMap(&m.Event, eventID(m))
	addDeliveryExtensions(attrs, m)
	b, _ := json.Marshal(attrs)
	return b
}

// addDeliveryExtensions adds where m is stored and, from a group, its group
// and attempt.
func addDeliveryExtensions(attrs map[string]any, m *herald.Message) {
	if m.Position != "" {
		attrs[ceExtPosition] = m.Pos().String()
		attrs[ceExtTopic] = m.Topic
	}
	if m.Group != "" {
		attrs[ceExtGroup] = m.Group
		attrs[ceExtAttempt] = max(m.Attempt, 1)
	}
}

// ceTypes reads ceTypesHeader: the type of each typed extension.
func ceTypes(h map[string]string) map[string]string {
	s := h[ceTypesHeader]
	if s == "" {
		return nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

// ceExtension is an extension's JSON value: a number or a boolean when it
// was stored as one and still reads as one, else its text.
func ceExtension(v, typ string) any {
	switch typ {
	case ceTypeInteger:
		if n, err := strconv.ParseInt(v, 10, 32); err == nil {
			return n
		}
	case ceTypeBoolean:
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return v
}

// ceContext is the context attributes of ev, id being its id.
func ceContext(ev *herald.Event, id string) map[string]any {
	m := map[string]any{"specversion": ceSpecVersion, "id": id}
	src := ev.Source
	if src == "" {
		src = "herald"
	}
	m["source"] = src
	typ := ev.Type
	if typ == "" {
		typ = "herald.event"
	}
	m["type"] = typ
	if ev.Subject != "" {
		m["subject"] = ev.Subject
	}
	if ev.Key != "" {
		m["partitionkey"] = ev.Key
	}
	if !ev.Time.IsZero() {
		m["time"] = ev.Time.UTC().Format(time.RFC3339Nano)
	}
	types := ceTypes(ev.Headers)
	for k, v := range ev.Headers {
		if validCEAttr(k) && !ceReserved[k] {
			m[k] = ceExtension(v, types[k])
		}
	}
	return m
}

func ceMap(ev *herald.Event, id string) map[string]any {
	m := ceContext(ev, id)
	if ev.ContentType != "" {
		m["datacontenttype"] = ev.ContentType
	}
	if len(ev.Data) > 0 {
		switch {
		case (ev.ContentType == "" || isJSONMedia(ev.ContentType)) && json.Valid(ev.Data):
			m["data"] = json.RawMessage(ev.Data)
			if ev.ContentType == "" {
				m["datacontenttype"] = mediaJSON
			}
		case ev.ContentType != "" && !isJSONMedia(ev.ContentType) && utf8.Valid(ev.Data):
			m["data"] = string(ev.Data)
		default:
			m["data_base64"] = base64.StdEncoding.EncodeToString(ev.Data)
			if ev.ContentType == "" {
				m["datacontenttype"] = "application/octet-stream"
			}
		}
	}
	return m
}

// setBinaryHeaders writes m's attributes as ce-* headers (HTTP binary mode:
// values percent-encoded as the HTTP binding says) and its content type;
// the body is the payload as is.
func setBinaryHeaders(h http.Header, m *herald.Message) {
	attrs := ceContext(&m.Event, eventID(m))
	addDeliveryExtensions(attrs, m)
	for k, v := range attrs {
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case int64:
			s = strconv.FormatInt(x, 10)
		case int:
			s = strconv.Itoa(x)
		case bool:
			s = strconv.FormatBool(x)
		}
		h["Ce-"+k] = []string{ceHeaderEscape(s)}
	}
	ct := m.ContentType
	if ct == "" {
		ct = "application/octet-stream"
		if json.Valid(m.Data) {
			ct = mediaJSON
		}
	}
	h.Set("Content-Type", ct)
}

// ceHeaderEscape percent-encodes a binary-mode header value: space, '"',
// '%' and everything outside printable ASCII (CloudEvents HTTP binding 3.1.3.2).
func ceHeaderEscape(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			return ceHeaderEscapeSlow(s)
		}
	}
	return s
}

func ceHeaderEscapeSlow(s string) string {
	var b strings.Builder
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

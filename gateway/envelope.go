package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/heraldbus/herald"
)

// The Herald JSON envelope: what POST accepts with Content-Type
// application/json and what SSE, WebSocket and the admin API return.
// CloudEvents, the other format, are in cloudevents.go.

// EventJSON is the Herald JSON envelope of an event: what POST accepts with
// Content-Type application/json (one object or an array) and what SSE,
// WebSocket and the admin API return. Output-only fields are ignored on input.
type EventJSON struct {
	ID          string            `json:"id,omitempty"`
	Type        string            `json:"type,omitempty"`
	Key         string            `json:"key,omitempty"`
	Source      string            `json:"source,omitempty"`
	Subject     string            `json:"subject,omitempty"`
	Time        *time.Time        `json:"time,omitempty"`
	ContentType string            `json:"content_type,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	// Data is the payload: JSON as is when the content type is JSON (or
	// empty and the payload is valid JSON), else a string of its text.
	Data json.RawMessage `json:"data,omitempty"`
	// DataBase64 is the payload in base64 when it is not valid UTF-8.
	DataBase64 string `json:"data_base64,omitempty"`

	// Output only.
	Topic     string `json:"topic,omitempty"`
	Partition *int   `json:"partition,omitempty"`
	Position  string `json:"position,omitempty"`
	Group     string `json:"group,omitempty"`
	Attempt   int    `json:"attempt,omitempty"`
}

// envelopeIn is the input form: the same fields, unknown ones refused.
type envelopeIn struct {
	ID          string            `json:"id"`
	Type        string            `json:"type"`
	Key         string            `json:"key"`
	Source      string            `json:"source"`
	Subject     string            `json:"subject"`
	Time        *time.Time        `json:"time"`
	ContentType string            `json:"content_type"`
	Headers     map[string]string `json:"headers"`
	Data        json.RawMessage   `json:"data"`
	DataBase64  *string           `json:"data_base64"`
	// Delivery time (admin_time.go): kept as the deliverat/delay attributes.
	DeliverAt string `json:"deliver_at"`
	Delay     any    `json:"delay"`
}

const envelopeHint = `a JSON body is an event envelope {"data": ..., "type": ..., "key": ...} or an array of them; ` +
	`to publish any other JSON as the payload, wrap it in {"data": ...}, or add ?raw=true`

// DecodeEnvelopes decodes the Herald JSON envelope: one object or an array.
func DecodeEnvelopes(b []byte) ([]herald.Event, error) {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) > 0 && t[0] == '[' {
		var raws []json.RawMessage
		if err := strictUnmarshal(b, &raws); err != nil {
			return nil, fmt.Errorf("%v; %s", err, envelopeHint)
		}
		out := make([]herald.Event, 0, len(raws))
		for i, r := range raws {
			ev, err := decodeEnvelope(r)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			out = append(out, ev)
		}
		return out, nil
	}
	ev, err := decodeEnvelope(b)
	if err != nil {
		return nil, err
	}
	return []herald.Event{ev}, nil
}

func decodeEnvelope(b []byte) (herald.Event, error) {
	var in envelopeIn
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&in); err != nil {
		return herald.Event{}, fmt.Errorf("%v; %s", err, envelopeHint)
	}
	if d.More() {
		return herald.Event{}, fmt.Errorf("extra data after the JSON value; %s", envelopeHint)
	}
	ev := herald.Event{ID: in.ID, Type: in.Type, Key: in.Key, Source: in.Source, Subject: in.Subject,
		ContentType: in.ContentType, Headers: in.Headers}
	if in.Time != nil {
		ev.Time = *in.Time
	}
	if in.DeliverAt != "" || in.Delay != nil {
		if ev.Headers == nil {
			ev.Headers = map[string]string{}
		}
		ev.Headers[attrDeliverAt], ev.Headers[attrDelay] = in.DeliverAt, fmt.Sprint(in.Delay)
		if in.Delay == nil {
			ev.Headers[attrDelay] = ""
		}
	}
	hasData := len(in.Data) > 0 && string(in.Data) != "null"
	switch {
	case hasData && in.DataBase64 != nil:
		return ev, fmt.Errorf("both data and data_base64 are set; send one of them")
	case in.DataBase64 != nil:
		var err error
		if ev.Data, err = base64.StdEncoding.DecodeString(*in.DataBase64); err != nil {
			return ev, fmt.Errorf("data_base64 is not valid base64: %v", err)
		}
	case hasData:
		var err error
		if ev.Data, err = decodeData(in.Data, ev.ContentType); err != nil {
			return ev, err
		}
		if ev.ContentType == "" {
			ev.ContentType = mediaJSON
		}
	default:
		return ev, fmt.Errorf("the event has no data; %s", envelopeHint)
	}
	return ev, nil
}

// encodeData fills the data fields of an envelope from a payload.
func encodeData(e *EventJSON, data []byte, ct string) {
	switch {
	case len(data) == 0:
	case (ct == "" || isJSONMedia(ct)) && json.Valid(data):
		e.Data = json.RawMessage(data)
	case utf8.Valid(data):
		e.Data, _ = json.Marshal(string(data))
	default:
		e.DataBase64 = base64.StdEncoding.EncodeToString(data)
	}
}

// envelope builds the output envelope of an event.
func envelope(ev *herald.Event) EventJSON {
	e := EventJSON{ID: ev.ID, Type: ev.Type, Key: ev.Key, Source: ev.Source, Subject: ev.Subject,
		ContentType: ev.ContentType, Headers: ev.Headers}
	if !ev.Time.IsZero() {
		t := ev.Time.UTC()
		e.Time = &t
	}
	encodeData(&e, ev.Data, ev.ContentType)
	return e
}

// messageEnvelope builds the output envelope of a stored or delivered event.
func messageEnvelope(m *herald.Message) EventJSON {
	e := envelope(&m.Event)
	e.ID = eventID(m) // cloudevents_out.go: derived from the position when the event has none
	p := m.Partition
	e.Topic, e.Partition, e.Position, e.Group, e.Attempt = m.Topic, &p, m.Pos().String(), m.Group, m.Attempt
	return e
}

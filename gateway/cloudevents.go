package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldbus/herald"
)

// CloudEvents 1.0 mapping (structured and batch JSON, and HTTP binary mode):
//
//	id              <-> Event.ID
//	source          <-> Event.Source
//	type            <-> Event.Type
//	subject         <-> Event.Subject
//	time            <-> Event.Time (RFC 3339)
//	datacontenttype <-> Event.ContentType
//	partitionkey    <-> Event.Key (the CloudEvents partitioning extension)
//	data / data_base64 <-> Event.Data
//	any other attribute (extensions, dataschema, traceparent...) <-> Event.Headers
//
// Header values are strings; the extensions that were integers or booleans
// are listed in the header ceTypesHeader ("count=integer,flag=boolean"),
// so that CloudEvents output gives them their type back. On output
// (cloudevents_out.go) an event stored without an id gets one derived from
// its position, and deliveries carry the extensions heraldposition (and,
// from a consumer group, heraldgroup and heraldattempt) so they can be
// acknowledged.
const (
	ceSpecVersion   = "1.0"
	mediaCE         = "application/cloudevents+json"
	mediaCEBatch    = "application/cloudevents-batch+json"
	mediaJSON       = "application/json"
	maxCEAttrLength = 20

	// ceTypesHeader lists the extensions stored from a JSON integer or
	// boolean, "<name>=<type>" comma-separated; it is not a valid
	// CloudEvents attribute name, so it never becomes an extension itself.
	ceTypesHeader = "herald-cetypes"
	ceTypeInteger = "integer"
	ceTypeBoolean = "boolean"
)

// ceReserved are the attributes with a field of their own in Event.
var ceReserved = map[string]bool{"specversion": true, "id": true, "source": true, "type": true, "subject": true,
	"time": true, "datacontenttype": true, "partitionkey": true, "data": true, "data_base64": true}

// isJSONMedia reports whether a content type is JSON (application/json or any +json).
func isJSONMedia(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(ct))
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/json"
}

// validCEAttr reports whether name is a valid CloudEvents attribute name:
// 1-20 lowercase letters or digits.
func validCEAttr(name string) bool {
	if name == "" || len(name) > maxCEAttrLength {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// DecodeCloudEvent decodes one CloudEvent in structured JSON mode
// (application/cloudevents+json).
func DecodeCloudEvent(b []byte) (herald.Event, error) {
	var m map[string]json.RawMessage
	if err := strictUnmarshal(b, &m); err != nil {
		return herald.Event{}, fmt.Errorf("CloudEvent: %v; send one JSON object with specversion, id, source and type", err)
	}
	if m == nil {
		return herald.Event{}, fmt.Errorf("CloudEvent: the body is null; send one JSON object with specversion, id, source and type")
	}
	return ceFromMap(m)
}

// DecodeCloudEventBatch decodes a JSON array of CloudEvents
// (application/cloudevents-batch+json).
func DecodeCloudEventBatch(b []byte) ([]herald.Event, error) {
	var arr []map[string]json.RawMessage
	if err := strictUnmarshal(b, &arr); err != nil {
		return nil, fmt.Errorf("CloudEvents batch: %v; send a JSON array of CloudEvent objects", err)
	}
	out := make([]herald.Event, 0, len(arr))
	for i, m := range arr {
		if m == nil {
			return nil, fmt.Errorf("CloudEvents batch: element %d is null; send CloudEvent objects", i)
		}
		ev, err := ceFromMap(m)
		if err != nil {
			return nil, fmt.Errorf("CloudEvents batch: element %d: %w", i, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("extra data after the JSON value")
	}
	if _, err := d.Token(); err == nil {
		return fmt.Errorf("extra data after the JSON value")
	}
	return nil
}

func ceString(m map[string]json.RawMessage, name string) (string, bool, error) {
	raw, ok := m[name]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, fmt.Errorf("attribute %q must be a string", name)
	}
	return s, true, nil
}

func ceFromMap(m map[string]json.RawMessage) (herald.Event, error) {
	var ev herald.Event
	get := func(name string, required bool) (string, error) {
		s, ok, err := ceString(m, name)
		if err != nil {
			return "", err
		}
		if required && (!ok || s == "") {
			return "", fmt.Errorf("required attribute %q is missing; CloudEvents 1.0 needs specversion, id, source and type", name)
		}
		return s, nil
	}
	sv, err := get("specversion", true)
	if err != nil {
		return ev, err
	}
	if sv != ceSpecVersion {
		return ev, fmt.Errorf("specversion %q is not supported; use \"1.0\"", sv)
	}
	if ev.ID, err = get("id", true); err != nil {
		return ev, err
	}
	if ev.Source, err = get("source", true); err != nil {
		return ev, err
	}
	if ev.Type, err = get("type", true); err != nil {
		return ev, err
	}
	if ev.Subject, err = get("subject", false); err != nil {
		return ev, err
	}
	if ev.Key, err = get("partitionkey", false); err != nil {
		return ev, err
	}
	if ev.ContentType, err = get("datacontenttype", false); err != nil {
		return ev, err
	}
	ts, err := get("time", false)
	if err != nil {
		return ev, err
	}
	if ts != "" {
		if ev.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return ev, fmt.Errorf("attribute \"time\" %q is not an RFC 3339 timestamp, e.g. 2024-05-01T12:00:00Z", ts)
		}
	}
	var typed []string // "<name>=<type>" of the extensions that are not strings
	for name, raw := range m {
		if ceReserved[name] {
			continue
		}
		if !validCEAttr(name) {
			return ev, fmt.Errorf("attribute name %q is invalid; CloudEvents attribute names are 1-20 lowercase letters or digits", name)
		}
		v, typ, err := ceExtensionValue(raw)
		if err != nil {
			return ev, fmt.Errorf("attribute %q: %v", name, err)
		}
		if ev.Headers == nil {
			ev.Headers = map[string]string{}
		}
		ev.Headers[name] = v
		if typ != "" {
			typed = append(typed, name+"="+typ)
		}
	}
	if len(typed) > 0 {
		slices.Sort(typed)
		ev.Headers[ceTypesHeader] = strings.Join(typed, ",")
	}
	data, hasData := m["data"]
	b64, hasB64 := m["data_base64"]
	if hasData && string(data) == "null" {
		hasData = false
	}
	if hasB64 && string(b64) == "null" {
		hasB64 = false
	}
	switch {
	case hasData && hasB64:
		return ev, fmt.Errorf("both data and data_base64 are set; send one of them")
	case hasB64:
		var s string
		if err := json.Unmarshal(b64, &s); err != nil {
			return ev, fmt.Errorf("data_base64 must be a string")
		}
		if ev.Data, err = base64.StdEncoding.DecodeString(s); err != nil {
			return ev, fmt.Errorf("data_base64 is not valid base64: %v", err)
		}
	case hasData:
		if ev.Data, err = decodeData(data, ev.ContentType); err != nil {
			return ev, err
		}
		if ev.ContentType == "" {
			ev.ContentType = mediaJSON // CloudEvents: absent datacontenttype in JSON format means application/json
		}
	}
	return ev, nil
}

// decodeData turns a JSON "data" member into payload bytes: the JSON itself
// for JSON content types (or none), the string's characters otherwise.
func decodeData(raw json.RawMessage, ct string) ([]byte, error) {
	if ct == "" || isJSONMedia(ct) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, fmt.Errorf("data is not valid JSON: %v", err)
		}
		return buf.Bytes(), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("data must be a JSON string when the content type (%s) is not JSON; or send data_base64", ct)
	}
	return []byte(s), nil
}

// ceExtensionValue is an extension's value as stored in a header, and its
// CloudEvents type when it is not a string (ceTypeInteger, ceTypeBoolean;
// other numbers are kept as their text, CloudEvents having no float type).
func ceExtensionValue(raw json.RawMessage) (string, string, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return "", "", err
	}
	switch x := v.(type) {
	case string:
		return x, "", nil
	case bool:
		return strconv.FormatBool(x), ceTypeBoolean, nil
	case json.Number:
		if _, err := strconv.ParseInt(x.String(), 10, 32); err == nil {
			return x.String(), ceTypeInteger, nil
		}
		return x.String(), "", nil
	}
	return "", "", fmt.Errorf("extension attributes must be strings, numbers or booleans")
}

// DecodeBinary decodes an HTTP request in CloudEvents binary mode: the
// attributes in ce-* headers, the payload in the body, its type in
// Content-Type. Header values are percent-decoded as the HTTP binding says.
func DecodeBinary(h http.Header, body []byte) (herald.Event, error) {
	ev := herald.Event{Data: body, ContentType: h.Get("Content-Type")}
	attrs := map[string]string{}
	for name, vals := range h {
		lname := strings.ToLower(name)
		attr, ok := strings.CutPrefix(lname, "ce-")
		if !ok || len(vals) == 0 {
			continue
		}
		v, err := url.PathUnescape(vals[0])
		if err != nil {
			return ev, fmt.Errorf("header %s: %v", name, err)
		}
		if !validCEAttr(attr) {
			return ev, fmt.Errorf("header %s: attribute name %q is invalid; CloudEvents attribute names are 1-20 lowercase letters or digits", name, attr)
		}
		if attr == "data" || attr == "data_base64" || attr == "datacontenttype" {
			return ev, fmt.Errorf("header %s is not allowed in binary mode; the payload is the body and its type Content-Type", name)
		}
		attrs[attr] = v
	}
	if attrs["specversion"] != ceSpecVersion {
		return ev, fmt.Errorf("ce-specversion %q is not supported; use 1.0", attrs["specversion"])
	}
	for _, req := range []string{"id", "source", "type"} {
		if attrs[req] == "" {
			return ev, fmt.Errorf("header ce-%s is missing; CloudEvents binary mode needs ce-specversion, ce-id, ce-source and ce-type", req)
		}
	}
	ev.ID, ev.Source, ev.Type, ev.Subject, ev.Key = attrs["id"], attrs["source"], attrs["type"], attrs["subject"], attrs["partitionkey"]
	if ts := attrs["time"]; ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return ev, fmt.Errorf("ce-time %q is not an RFC 3339 timestamp, e.g. 2024-05-01T12:00:00Z", ts)
		}
		ev.Time = t
	}
	for k, v := range attrs {
		if ceReserved[k] {
			continue
		}
		if ev.Headers == nil {
			ev.Headers = map[string]string{}
		}
		ev.Headers[k] = v
	}
	return ev, nil
}

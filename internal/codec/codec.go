// Package codec converts Herald events to and from the flat field/value pairs
// of a Redis stream entry. The layout is documented in docs/redis-schema.md so
// that any Redis client in any language can produce and consume Herald events.
//
// Field names are short because every stream entry repeats them:
//
//	i   event id            t   type           k   partition key
//	s   source              u   subject        tm  time, Unix microseconds
//	ct  content type        d   data (raw bytes, no envelope)
//	h.NAME  one header      a   attempt (retries only)   o  original position
//	x.group x.error x.attempts x.pos x.time   dead-letter metadata
//
// Empty fields are omitted. An entry without tm takes its time from its stream
// position (the append time, in milliseconds).
package codec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Field names of a stream entry.
const (
	FieldID          = "i"
	FieldType        = "t"
	FieldKey         = "k"
	FieldSource      = "s"
	FieldSubject     = "u"
	FieldTime        = "tm"
	FieldContentType = "ct"
	FieldData        = "d"
	FieldAttempt     = "a"
	FieldOrigin      = "o"
	HeaderPrefix     = "h."
	DeadPrefix       = "x."
	FieldDeadGroup   = "x.group"
	FieldDeadError   = "x.error"
	FieldDeadAttempt = "x.attempts"
	FieldDeadPos     = "x.pos"
	FieldDeadTime    = "x.time"
)

// Event is the codec's view of an event; the root package converts its own
// Event type to and from this one.
type Event struct {
	ID          string
	Type        string
	Key         string
	Source      string
	Subject     string
	Time        time.Time
	ContentType string
	Headers     map[string]string
	Data        []byte
}

// Meta is the delivery and dead-letter metadata carried beside an event.
type Meta struct {
	Attempt     int    // 0 or 1 on a first delivery
	Origin      string // original stream position of a retried or redriven event
	DeadGroup   string
	DeadError   string
	DeadAttempt int
	DeadPos     string
	DeadTime    time.Time
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("codec: malformed stream entry")

// Append appends the field/value pairs of ev to dst. A zero Time is omitted,
// which makes the stream position the event's time.
func Append(dst []string, ev *Event) []string {
	if ev.ID != "" {
		dst = append(dst, FieldID, ev.ID)
	}
	if ev.Type != "" {
		dst = append(dst, FieldType, ev.Type)
	}
	if ev.Key != "" {
		dst = append(dst, FieldKey, ev.Key)
	}
	if ev.Source != "" {
		dst = append(dst, FieldSource, ev.Source)
	}
	if ev.Subject != "" {
		dst = append(dst, FieldSubject, ev.Subject)
	}
	if !ev.Time.IsZero() {
		dst = append(dst, FieldTime, strconv.FormatInt(ev.Time.UnixMicro(), 10))
	}
	if ev.ContentType != "" {
		dst = append(dst, FieldContentType, ev.ContentType)
	}
	for k, v := range ev.Headers {
		dst = append(dst, HeaderPrefix+k, v)
	}
	return append(dst, FieldData, string(ev.Data))
}

// FieldCount is the number of strings Append writes for ev (names and values).
func FieldCount(ev *Event) int {
	n := 2 + 2*len(ev.Headers) // data, headers
	for _, s := range [...]string{ev.ID, ev.Type, ev.Key, ev.Source, ev.Subject, ev.ContentType} {
		if s != "" {
			n += 2
		}
	}
	if !ev.Time.IsZero() {
		n += 2
	}
	return n
}

// Size is the number of bytes ev occupies as field values (for size limits).
func Size(ev *Event) int {
	n := len(ev.ID) + len(ev.Type) + len(ev.Key) + len(ev.Source) + len(ev.Subject) + len(ev.ContentType) + len(ev.Data) + 16
	for k, v := range ev.Headers {
		n += len(k) + len(v) + 2
	}
	return n
}

// Decode parses field/value pairs into an event and its metadata. position is
// the entry's stream id, used for the time when the entry has no tm field.
// A malformed field makes it return an error wrapping ErrMalformed, together
// with everything else it could decode (so a bad entry can still be
// dead-lettered and inspected with its group and data).
func Decode(pairs []string, position string) (Event, Meta, error) {
	var ev Event
	var m Meta
	var bad error // the first malformed field; the others are still decoded
	if len(pairs)%2 != 0 {
		bad = fmt.Errorf("%w: odd number of fields (%d)", ErrMalformed, len(pairs))
		pairs = pairs[:len(pairs)-1]
	}
	for i := 0; i < len(pairs); i += 2 {
		f, v := pairs[i], pairs[i+1]
		switch f {
		case FieldID:
			ev.ID = v
		case FieldType:
			ev.Type = v
		case FieldKey:
			ev.Key = v
		case FieldSource:
			ev.Source = v
		case FieldSubject:
			ev.Subject = v
		case FieldTime:
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				if bad == nil {
					bad = fmt.Errorf("%w: field tm %q is not Unix microseconds", ErrMalformed, v)
				}
				continue
			}
			ev.Time = time.UnixMicro(us).UTC()
		case FieldContentType:
			ev.ContentType = v
		case FieldData:
			ev.Data = []byte(v)
		case FieldAttempt:
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				if bad == nil {
					bad = fmt.Errorf("%w: field a %q is not an attempt count", ErrMalformed, v)
				}
				continue
			}
			m.Attempt = n
		case FieldOrigin:
			m.Origin = v
		case FieldDeadGroup:
			m.DeadGroup = v
		case FieldDeadError:
			m.DeadError = v
		case FieldDeadAttempt:
			m.DeadAttempt, _ = strconv.Atoi(v)
		case FieldDeadPos:
			m.DeadPos = v
		case FieldDeadTime:
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
				m.DeadTime = time.UnixMilli(ms).UTC()
			}
		default:
			if name, ok := strings.CutPrefix(f, HeaderPrefix); ok {
				if ev.Headers == nil {
					ev.Headers = make(map[string]string, 2)
				}
				ev.Headers[name] = v
			}
			// Unknown fields are ignored so that newer writers stay readable.
		}
	}
	if ev.Time.IsZero() && position != "" {
		t, err := PositionTime(position)
		if err != nil && bad == nil {
			bad = err
		}
		ev.Time = t
	}
	return ev, m, bad
}

// PositionTime is the append time encoded in a stream id "<ms>-<seq>".
func PositionTime(position string) (time.Time, error) {
	ms, _, ok := strings.Cut(position, "-")
	if !ok {
		return time.Time{}, fmt.Errorf("%w: position %q is not <ms>-<seq>", ErrMalformed, position)
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("%w: position %q is not <ms>-<seq>", ErrMalformed, position)
	}
	return time.UnixMilli(n).UTC(), nil
}

// ValidHeaderName reports whether name can be stored as a header field.
func ValidHeaderName(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

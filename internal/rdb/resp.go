package rdb

import (
	"bufio"
	"errors"
	"strconv"
	"strings"
)

// Herald speaks RESP2 itself on a partition reader's connection (ReadConn):
// a generic client turns every string of an XREADGROUP reply into a message
// of its own (measured with rueidis: 1.13-1.26 µs of client CPU per event
// read and acknowledged, against 0.58-0.73 µs for this reader, which reads
// an entry's strings into one allocation; docs/design.md).

// maxBulk is the longest bulk string a reply may carry: Redis's own limit
// (proto-max-bulk-len, 512 MB). maxElems bounds an array's declared length;
// arrays are grown as their elements arrive, never allocated from it.
const (
	maxBulk  = 512 << 20
	maxElems = 1 << 24
)

// ReplyError is an error reply that Herald read on a connection it speaks
// RESP on itself. IsNoGroup, Transient and the other reply checks know it.
type ReplyError struct{ Msg string }

// Error returns the reply's text, e.g. "NOGROUP No such key ...".
func (e *ReplyError) Error() string { return e.Msg }

// errProto reports a reply that is not RESP as Herald expects it.
var errProto = errors.New("rdb: malformed reply from Redis")

// appendCmd appends a command of n arguments' header; appendArg each
// argument.
func appendCmd(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

func appendArg(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// appendArgs appends a whole command; appendStrs arguments only.
func appendArgs(b []byte, args ...string) []byte {
	return appendStrs(appendCmd(b, len(args)), args...)
}

func appendStrs(b []byte, args ...string) []byte {
	for _, a := range args {
		b = appendArg(b, a)
	}
	return b
}

// respReader reads RESP2 replies.
type respReader struct {
	r       *bufio.Reader
	scratch []byte // an entry's strings before they become one string
}

// line reads one line without its CRLF (a view into the buffer, valid
// until the next read).
func (p *respReader) line() ([]byte, error) {
	b, err := p.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errProto
		}
		return nil, err
	}
	if len(b) < 3 || b[len(b)-2] != '\r' {
		return nil, errProto
	}
	return b[:len(b)-2], nil
}

// parseLen reads a length or integer.
func parseLen(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, errProto
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, errProto
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' || n > (1<<62)/10 {
			return 0, errProto
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// header reads a reply's first line: its type byte and, for arrays, bulks
// and integers, its number (-1 for a nil). An error reply comes back as
// a *ReplyError.
func (p *respReader) header() (byte, int64, error) {
	l, err := p.line()
	if err != nil {
		return 0, 0, err
	}
	switch l[0] {
	case '-':
		return '-', 0, &ReplyError{Msg: string(l[1:])}
	case '+':
		return '+', 0, nil
	case '*', '$', ':':
		n, err := parseLen(l[1:])
		if err != nil {
			return 0, 0, err
		}
		if n < -1 || (l[0] == '$' && n > maxBulk) || (l[0] == '*' && n > maxElems) {
			return 0, 0, errProto
		}
		return l[0], n, nil
	}
	return 0, 0, errProto
}

// arrayLen reads an array header: its length, -1 for a nil array.
func (p *respReader) arrayLen() (int64, error) {
	t, n, err := p.header()
	if err != nil {
		return 0, err
	}
	if t != '*' && !(t == '$' && n == -1) {
		return 0, errProto
	}
	return n, nil
}

// bulkInto reads a bulk string and appends its bytes to b; nil is -1.
func (p *respReader) bulkInto(b []byte) ([]byte, int64, error) {
	t, n, err := p.header()
	if err != nil {
		return b, 0, err
	}
	if t != '$' {
		return b, 0, errProto
	}
	if n < 0 {
		return b, -1, nil
	}
	b, err = p.body(b, n)
	return b, n, err
}

// body reads the n bytes of a bulk string whose header was read, and its
// CRLF, appending them to b.
func (p *respReader) body(b []byte, n int64) ([]byte, error) {
	if n+2 <= int64(p.r.Size()) {
		v, err := p.r.Peek(int(n) + 2)
		if err != nil {
			return b, err
		}
		if v[n] != '\r' || v[n+1] != '\n' {
			return b, errProto
		}
		b = append(b, v[:n]...)
		_, _ = p.r.Discard(int(n) + 2)
		return b, nil
	}
	// Longer than the buffer: read it through, growing b as it arrives.
	for left := n; left > 0; {
		k := min(left, int64(p.r.Size()))
		v, err := p.r.Peek(int(k))
		if err != nil {
			return b, err
		}
		b = append(b, v...)
		_, _ = p.r.Discard(int(k))
		left -= k
	}
	crlf, err := p.r.Peek(2)
	if err != nil {
		return b, err
	}
	if crlf[0] != '\r' || crlf[1] != '\n' {
		return b, errProto
	}
	_, _ = p.r.Discard(2)
	return b, nil
}

// value reads any reply whole: int64, string, nil, []any, or a
// *ReplyError as the error. For small replies (acks, summaries).
func (p *respReader) value(depth int) (any, error) {
	if depth > 8 {
		return nil, errProto
	}
	t, n, err := p.header()
	if err != nil {
		return nil, err
	}
	switch t {
	case '+':
		return "OK", nil
	case ':':
		return n, nil
	case '$':
		if n < 0 {
			return nil, nil
		}
		b, err := p.body(nil, n)
		return string(b), err
	}
	if n < 0 {
		return nil, nil
	}
	out := make([]any, 0, min(n, 64))
	var first error // an error reply inside an array (EXEC) does not end it
	for range n {
		v, err := p.value(depth + 1)
		if isReply(err) {
			if first == nil {
				first = err
			}
			v, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, first
}

// skip reads one reply and returns only its error reply, if any.
func (p *respReader) skip() error {
	_, err := p.value(0)
	return err
}

// pairHead reads the header of a two-element array and its first element,
// a bulk string that must not be nil, appended to b.
func (p *respReader) pairHead(b []byte) ([]byte, error) {
	if n, err := p.arrayLen(); err != nil {
		return b, err
	} else if n != 2 {
		return b, errProto
	}
	b, n, err := p.bulkInto(b)
	if err == nil && n < 0 {
		err = errProto
	}
	return b, err
}

// entries reads an XREADGROUP reply (RESP2: [[stream, [[id, [f, v, ...]],
// ...]], ...], or a nil array when the read timed out). Each entry's id and
// strings become one allocation; the entries' field slices share one
// backing array per stream.
func (p *respReader) entries() ([]Entry, error) {
	ns, err := p.arrayLen()
	if err != nil || ns <= 0 {
		return nil, err
	}
	var out []Entry
	for range ns {
		name, err := p.pairHead(p.scratch[:0])
		if err != nil {
			return nil, err
		}
		stream := string(name)
		ne, err := p.arrayLen()
		if err != nil {
			return nil, err
		}
		if ne <= 0 {
			continue
		}
		if out == nil {
			out = make([]Entry, 0, min(ne, 1024))
		}
		pairs := make([]string, 0, min(ne, 1024)*6) // i, k and d; more fields grow it
		var ends []int
		for range ne {
			b, err := p.pairHead(p.scratch[:0])
			if err != nil {
				return nil, err
			}
			ends = append(ends[:0], len(b))
			nf, err := p.arrayLen()
			if err != nil {
				return nil, err
			}
			if nf%2 != 0 && nf > 0 {
				return nil, errProto
			}
			for range max(nf, 0) {
				var n int64
				if b, n, err = p.bulkInto(b); err != nil {
					return nil, err
				}
				if n < 0 {
					return nil, errProto
				}
				ends = append(ends, len(b))
			}
			p.scratch = b
			if cap(b) > 64<<10 {
				p.scratch = nil // one big event must not keep its size per connection
			}
			s := string(b)
			en := Entry{Stream: stream, ID: s[:ends[0]]}
			if nf >= 0 { // a nil field list: the entry was deleted while pending
				start := len(pairs)
				for i := 1; i < len(ends); i++ {
					pairs = append(pairs, s[ends[i-1]:ends[i]])
				}
				en.Pairs = pairs[start:len(pairs):len(pairs)]
			}
			out = append(out, en)
		}
	}
	return out, nil
}

// replyText is the text of an error reply from Redis, through either
// client, and whether err is one.
func replyText(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	var re *ReplyError
	if errors.As(err, &re) {
		return re.Msg, true
	}
	if r, ok := isRedisErr(err); ok {
		return r, true
	}
	return "", false
}

// movedTo is the address of a MOVED reply ("MOVED <slot> <host:port>").
func movedTo(err error) string {
	msg, ok := replyText(err)
	if !ok || !strings.HasPrefix(msg, "MOVED ") {
		return ""
	}
	f := strings.Fields(msg)
	if len(f) != 3 {
		return ""
	}
	return f[2]
}

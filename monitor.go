package herald

import (
	"context"
	"errors"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/rdb"
)

// MonitorFilter selects what Monitor shows. The zero value shows every
// topic and every channel.
type MonitorFilter struct {
	// Topics is a glob pattern of topic names (default "*"): '*' matches
	// any run of characters, '/' included (as in the Redis patterns of
	// Channels), '?' one character, "[...]" one character of a class
	// ("[a-c]", "[^x]" or "[!x]" for any other), and '\' makes the next
	// character literal. See MatchTopic.
	Topics string
	// Channels is a glob pattern of channels (default "*").
	Channels string
	// SkipTopics and SkipChannels turn one side off.
	SkipTopics, SkipChannels bool
}

// Validate reports a Topics pattern that is not a glob (an unclosed "[",
// a '\' at its end), as an ErrInvalid error.
func (f MonitorFilter) Validate() error {
	if err := checkGlob(f.Topics); err != nil {
		return invalid("topic pattern %q: %v; use * for any characters, ? for one, [a-z] for one of a class, \\ before a literal * ? [", f.Topics, err)
	}
	return nil
}

// MatchTopic reports whether the topic name matches the Topics pattern
// ("" matches every topic): '*' matches any run of characters, '/'
// included, so "orders*" matches "orders/eu/1" and "*" every topic; '?'
// one character; "[...]" one character of a class; '\' quotes the next
// character. A malformed pattern (see Validate) matches nothing.
func (f MonitorFilter) MatchTopic(name string) bool {
	if f.Topics == "" {
		return true
	}
	if checkGlob(f.Topics) != nil {
		return false
	}
	return globMatch(f.Topics, name)
}

// checkGlob reports a malformed glob pattern.
func checkGlob(p string) error {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			if i+1 == len(p) {
				return errGlobEscape
			}
			i++
		case '[':
			_, n, ok := matchClass(p[i:], 0)
			if !ok {
				return errGlobClass
			}
			i += n - 1
		}
	}
	return nil
}

var (
	errGlobEscape = errors.New("the pattern ends with '\\'")
	errGlobClass  = errors.New("a '[' class is not closed by ']', or has a bad range")
)

// globMatch matches name against a well-formed pattern (checkGlob). A '*'
// backtracks to the last star only: what an earlier star matched can be
// given to the later one, so one backtrack point is enough.
func globMatch(p, name string) bool {
	px, nx := 0, 0
	starP, starN := -1, 0
	for px < len(p) || nx < len(name) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				starP, starN = px, nx
				px++
				continue
			case '?':
				if nx < len(name) {
					_, w := utf8.DecodeRuneInString(name[nx:])
					px++
					nx += w
					continue
				}
			case '[':
				if nx < len(name) {
					r, w := utf8.DecodeRuneInString(name[nx:])
					if ok, n, _ := matchClass(p[px:], r); ok {
						px += n
						nx += w
						continue
					}
				}
			case '\\':
				if nx < len(name) && p[px+1] == name[nx] {
					px += 2
					nx++
					continue
				}
			default:
				if nx < len(name) && c == name[nx] {
					px++
					nx++
					continue
				}
			}
		}
		if starP < 0 || starN >= len(name) {
			return false
		}
		_, w := utf8.DecodeRuneInString(name[starN:])
		starN += w
		px, nx = starP+1, starN
	}
	return true
}

// matchClass matches r against the class that opens p ("[...]"): it
// returns whether r is in it, the class's length in bytes, and false for
// a malformed class. A ']' first in the class is literal.
func matchClass(p string, r rune) (in bool, n int, ok bool) {
	i := 1
	negate := false
	if i < len(p) && (p[i] == '^' || p[i] == '!') {
		negate = true
		i++
	}
	first := true
	for {
		if i >= len(p) {
			return false, 0, false
		}
		if p[i] == ']' && !first {
			return in != negate, i + 1, true
		}
		first = false
		lo, w, ok := classChar(p[i:])
		if !ok {
			return false, 0, false
		}
		i += w
		hi := lo
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			if hi, w, ok = classChar(p[i+1:]); !ok || hi < lo {
				return false, 0, false
			}
			i += 1 + w
		}
		if lo <= r && r <= hi {
			in = true
		}
	}
}

// classChar reads one (possibly '\'-quoted) character of a class.
func classChar(p string) (r rune, n int, ok bool) {
	if p[0] == '\\' {
		if len(p) < 2 {
			return 0, 0, false
		}
		r, w := utf8.DecodeRuneInString(p[1:])
		return r, 1 + w, true
	}
	r, w := utf8.DecodeRuneInString(p)
	return r, w, true
}

// MonitorEvent is one event or channel message seen by Monitor.
type MonitorEvent struct {
	Seen      time.Time     `json:"seen"`
	Kind      string        `json:"kind"` // "event" (a topic) or "message" (a channel)
	Topic     string        `json:"topic,omitempty"`
	Partition int           `json:"partition"`
	Position  string        `json:"position,omitempty"`
	ID        string        `json:"id,omitempty"`
	Type      string        `json:"type,omitempty"`
	Key       string        `json:"key,omitempty"`
	Channel   string        `json:"channel,omitempty"`
	Pattern   string        `json:"pattern,omitempty"`
	Size      int           `json:"size"`
	Age       time.Duration `json:"age_ns"` // Seen minus the event's time
}

// Monitor shows events as they flow. Topics are tailed with XREAD (no
// consumer group: it costs publishers and consumers nothing) from their
// ends as Monitor starts; topics created later are picked up within a
// second, from their beginning. Channels are pattern-subscribed. The end
// of every topic is read before the channel subscription is made, so an
// event published after Monitor returns, or after its subscription shows
// in PUBSUB NUMPAT, is never missed. The returned channel is closed when
// ctx ends.
func (c *Client) Monitor(ctx context.Context, f MonitorFilter) (<-chan MonitorEvent, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if f.Topics == "" {
		f.Topics = "*"
	}
	if f.Channels == "" {
		f.Channels = "*"
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	out := make(chan MonitorEvent, 1024)
	var wg sync.WaitGroup
	emit := func(ev MonitorEvent) {
		select {
		case out <- ev:
		case <-ctx.Done():
		}
	}
	// The ends of the existing topics are read first: once the channel
	// subscription is visible (PUBSUB NUMPAT, what a script waiting for
	// `herald monitor` to start can see) or Monitor has returned, every
	// event published since lies after them. Topics that appear later are
	// read from their beginning.
	type tailFrom struct {
		name   string
		t      *topic
		starts []string
	}
	var (
		existing []tailFrom
		tailed   = map[string]bool{}
	)
	if !f.SkipTopics {
		names, err := c.db.TopicNames(ctx)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if !f.MatchTopic(n) {
				continue
			}
			t, err := c.topic(ctx, n, false)
			if err != nil {
				continue // picked up later, from its beginning
			}
			tf := tailFrom{name: n, t: t}
			for _, pk := range t.parts {
				id, err := c.db.LastID(ctx, pk.Stream)
				if err != nil {
					return nil, err
				}
				tf.starts = append(tf.starts, id)
			}
			existing = append(existing, tf)
			tailed[n] = true
		}
	}
	if !f.SkipChannels {
		l, err := c.Listen(ctx, ListenConfig{Patterns: []string{f.Channels}})
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			go func() { <-ctx.Done(); l.Close() }()
			for m := range l.Messages() {
				if m.Kind != "pmessage" {
					continue
				}
				emit(MonitorEvent{Seen: time.Now(), Kind: "message", Channel: m.Channel, Pattern: m.Pattern, Size: len(m.Data)})
			}
		}()
	}
	if !f.SkipTopics {
		tailTopic := func(name string, t *topic, starts []string) {
			for p, pk := range t.parts {
				after := "0-0"
				if p < len(starts) {
					after = starts[p]
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.tail(ctx, name, p, pk.Stream, after, emit)
				}()
			}
		}
		for _, tf := range existing {
			tailTopic(tf.name, tf.t, tf.starts)
		}
		wg.Add(1)
		go func() { // topics created while the monitor runs, from their beginning
			defer wg.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				names, err := c.db.TopicNames(ctx)
				if err != nil {
					continue
				}
				for _, n := range names {
					if !f.MatchTopic(n) || tailed[n] {
						continue
					}
					if t, err := c.topic(ctx, n, false); err == nil {
						tailed[n] = true
						tailTopic(n, t, nil)
					}
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out, nil
}

func (c *Client) tail(ctx context.Context, topic string, p int, stream, after string, emit func(MonitorEvent)) {
	b := newBackoff()
	for ctx.Err() == nil {
		es, err := c.db.Tail(ctx, stream, after, 500, 1000)
		if err != nil {
			if ctx.Err() == nil {
				b.wait(ctx)
			}
			continue
		}
		b.reset()
		now := time.Now()
		for _, e := range es {
			after = e.ID
			ev, _, err := codec.Decode(e.Pairs, e.ID)
			if err != nil {
				continue
			}
			emit(MonitorEvent{Seen: now, Kind: "event", Topic: topic, Partition: p, Position: e.ID, ID: ev.ID, Type: ev.Type,
				Key: ev.Key, Size: len(ev.Data), Age: now.Sub(ev.Time)})
		}
	}
}

// RawMonitorLine is one line of Redis MONITOR output, labelled with its node.
type RawMonitorLine struct {
	Node string `json:"node"`
	Line string `json:"line"`
}

// MonitorRaw runs Redis MONITOR on every node (on a cluster: masters and
// replicas) and merges the lines into one channel, closed when ctx ends or
// every connection is lost. MONITOR costs Redis throughput: use it for
// debugging, not in production paths.
func (c *Client) MonitorRaw(ctx context.Context) (<-chan RawMonitorLine, <-chan error) {
	out := make(chan RawMonitorLine, 1024)
	errc := make(chan error, 1)
	lines := make(chan rdb.MonitorLine, 1024)
	go func() {
		errc <- c.db.Monitor(ctx, lines)
		close(lines)
	}()
	go func() {
		defer close(out)
		for l := range lines {
			select {
			case out <- RawMonitorLine{Node: l.Node, Line: l.Line}:
			case <-ctx.Done(): // keep draining until the connections have ended
			}
		}
	}()
	return out, errc
}

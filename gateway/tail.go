package gateway

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/heraldbus/herald"
)

// tailStart says where a live tail begins in each partition.
type tailStart struct {
	beginning bool
	from      string // inclusive start in every partition (a stream id)
	after     map[int]string
}

// parseTailStart reads ?from= (now, beginning, a stream id "<ms>[-<seq>]"
// or a position "<p>/<id>", inclusive) and Last-Event-ID (a position: that
// partition resumes after it, the others at its time).
func parseTailStart(from, lastID string) (tailStart, error) {
	var ts tailStart
	if lastID != "" {
		p, err := herald.ParsePosition(lastID)
		if err != nil {
			return ts, badRequest("Last-Event-ID %q is not a position; use <partition>/<stream id> as the stream's ids are", lastID)
		}
		ts.after = map[int]string{p.Partition: p.ID}
		ms, _, _ := strings.Cut(p.ID, "-")
		ts.from = ms + "-0"
		return ts, nil
	}
	switch from {
	case "", "now":
	case "beginning", "0":
		ts.beginning = true
	default:
		id := from
		if _, rest, ok := strings.Cut(from, "/"); ok {
			id = rest
		}
		if _, err := herald.ParsePosition(id); err != nil {
			return ts, badRequest("from %q: use now, beginning, a stream id <ms>-<seq> or a time in ms", from)
		}
		ts.from = id
	}
	return ts, nil
}

// nextID is the smallest stream id after id.
func nextID(id string) string {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return ms + "-1"
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return id
	}
	return ms + "-" + strconv.FormatUint(n+1, 10)
}

// now reports a start at the end of the topic (the default).
func (ts tailStart) now() bool { return !ts.beginning && ts.from == "" && ts.after == nil }

// tail delivers a topic's events from start on through the topic's shared
// feed (hub.go): events before the feed's position are read by position
// first, then the feed's batches follow; after a gap (the subscriber
// lagged, or a partition it had not seen) it reads by position again.
// Nothing is skipped and nothing is sent twice.
//
// emit takes each event; flush (which may be nil) is called when the
// stream has nothing more at hand, so that emit may buffer. ready is
// called once the tail has joined the topic's feed, before anything is
// emitted: every event appended after it returns is delivered.
func (g *Gateway) tail(ctx context.Context, topic string, start tailStart, beat <-chan time.Time, heartbeat func() error,
	emit func(*feedEvent) error, flush func() error, ready func() error) error {
	if flush == nil {
		flush = func() error { return nil }
	}
	f, sub, feedCur, err := g.hub.join(ctx, topic)
	if err != nil {
		return err
	}
	defer f.leave(sub)
	// cursor[p] is the next id to send (inclusive); partitions beyond it
	// start at their beginning (a topic created after the stream opened).
	var cursor []string
	if start.now() {
		cursor = feedCur
	} else {
		ti, err := g.c.TopicInfo(ctx, topic)
		if err != nil && !errors.Is(err, herald.ErrTopicNotFound) {
			return err
		}
		for i := range ti.Partitions {
			switch {
			case start.after != nil && start.after[i] != "":
				cursor = append(cursor, nextID(start.after[i]))
			case start.from != "":
				cursor = append(cursor, start.from)
			default:
				cursor = append(cursor, "0-0")
			}
		}
	}
	if err := ready(); err != nil {
		return err
	}
	read := func(p int) error {
		for len(cursor) <= p {
			cursor = append(cursor, "0-0")
		}
		for {
			es, err := g.c.Events(ctx, topic, herald.Query{Partitions: []int{p}, From: cursor[p], Limit: feedPage})
			if err != nil {
				return err
			}
			for i := range es {
				if err := emit(newFeedEvent(&es[i])); err != nil {
					return err
				}
				cursor[p] = nextID(es[i].Position)
			}
			if err := flush(); err != nil {
				return err
			}
			if len(es) < feedPage {
				return nil
			}
		}
	}
	if !start.now() {
		for p := range cursor {
			if err := read(p); err != nil {
				return err
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.ended:
			if f.err != nil {
				return f.err
			}
			return ctx.Err()
		case <-beat:
			if err := heartbeat(); err != nil {
				return err
			}
		case b := <-sub.ch:
			p := b.partition
			if p >= len(cursor) || herald.StreamIDLess(cursor[p], b.from) {
				if err := read(p); err != nil { // a gap before the batch
					return err
				}
			}
			for _, fe := range b.events {
				if herald.StreamIDLess(fe.id, cursor[p]) {
					continue // sent already
				}
				if err := emit(fe); err != nil {
					return err
				}
				cursor[p] = fe.next
			}
			if len(sub.ch) > 0 {
				continue // more at hand: one write for all of it
			}
			if err := flush(); err != nil {
				return err
			}
			if sub.lagged.Swap(false) {
				for p := range cursor {
					if err := read(p); err != nil {
						return err
					}
				}
			}
		}
	}
}

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

// tail delivers a topic's events as they are appended, without a consumer
// group. The monitor's tail wakes it; it then reads each woken partition
// from its cursor (so nothing is skipped), and every second reads all of
// them (topics created later, missed wake-ups).
func (g *Gateway) tail(ctx context.Context, topic string, start tailStart, beat <-chan time.Time, heartbeat func() error,
	emit func(*herald.StoredEvent) error) error {
	mon, err := g.c.Monitor(ctx, herald.MonitorFilter{Topics: topic, SkipChannels: true})
	if err != nil {
		return err
	}
	// cursor[p] is the next id to read (inclusive); "" until the topic exists.
	var cursor []string
	initCursors := func() error {
		ti, err := g.c.TopicInfo(ctx, topic)
		if errors.Is(err, herald.ErrTopicNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		fresh := cursor == nil
		cursor = make([]string, len(ti.Partitions))
		for i, pi := range ti.Partitions {
			switch {
			case start.after != nil && start.after[i] != "":
				cursor[i] = nextID(start.after[i])
			case start.from != "":
				cursor[i] = start.from
			case start.beginning || !fresh:
				cursor[i] = "0-0"
			case pi.LastID != "":
				cursor[i] = nextID(pi.LastID)
			default:
				cursor[i] = "0-0"
			}
		}
		return nil
	}
	if err := initCursors(); err != nil {
		return err
	}
	if cursor == nil {
		cursor = []string{} // not there yet: everything it gets is new
		start = tailStart{beginning: true}
	}
	read := func(p int) error {
		for {
			es, err := g.c.Events(ctx, topic, herald.Query{Partitions: []int{p}, From: cursor[p], Limit: 500})
			if err != nil {
				return err
			}
			for i := range es {
				if err := emit(&es[i]); err != nil {
					return err
				}
				cursor[p] = nextID(es[i].Position)
			}
			if len(es) < 500 {
				return nil
			}
		}
	}
	readAll := func() error {
		if len(cursor) == 0 {
			if err := initCursors(); err != nil {
				return err
			}
		}
		for p := range cursor {
			if err := read(p); err != nil {
				return err
			}
		}
		return nil
	}
	if err := readAll(); err != nil {
		return err
	}
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-beat:
			if err := heartbeat(); err != nil {
				return err
			}
		case <-sweep.C:
			if err := readAll(); err != nil {
				return err
			}
		case ev, ok := <-mon:
			if !ok {
				return ctx.Err()
			}
			woken := map[int]bool{ev.Partition: true}
		more:
			for {
				select {
				case ev, ok := <-mon:
					if !ok {
						break more
					}
					woken[ev.Partition] = true
				default:
					break more
				}
			}
			if len(cursor) == 0 {
				if err := readAll(); err != nil {
					return err
				}
				continue
			}
			for p := range woken {
				if p < len(cursor) {
					if err := read(p); err != nil {
						return err
					}
				}
			}
		}
	}
}

package benchrun

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald"
)

// RunConsume measures how fast a stored backlog is consumed and
// acknowledged, in cfg.Rounds alternating rounds. The first round's Herald
// topic is filled for cfg.Duration/cfg.Rounds with PublishBatch; every
// other backlog of the run gets exactly as many entries. Then:
//
//   - Herald: one Subscribe from the beginning with default options
//     (concurrency 8), timed until every event was handled and nothing is
//     pending any more (the acknowledgements landed);
//   - raw: one goroutine per stream doing XREADGROUP COUNT 100 then one XACK
//     of the batch, timed until every entry was acknowledged.
//
// Filling is not measured.
func RunConsume(ctx context.Context, cfg Config) (res Result, err error) {
	b, res, err := open(ctx, "consume", cfg)
	if err != nil {
		return res, err
	}
	defer b.close()
	// The first round's Herald backlog, filled for b.span, sets how many
	// events every backlog of the run holds (n); it runs first.
	var n int64
	sides, err := b.alternate(ctx, []sideRun{
		{"herald Subscribe", func(ctx context.Context, r int) (Side, error) {
			side, stored, err := b.heraldConsume(ctx, r, n)
			n = stored
			return side, err
		}},
		{"raw XREADGROUP+XACK", func(ctx context.Context, r int) (Side, error) { return b.rawConsume(ctx, r, n) }},
		{"raw XREADGROUP+XACK of Herald's entries", func(ctx context.Context, r int) (Side, error) {
			return b.rawConsumeHeraldEntries(ctx, r, n)
		}},
	})
	if err != nil {
		return res, err
	}
	heraldDoes := fmt.Sprintf("Subscribe, %s, defaults (%d handlers), %d partitions, %d events, %d keys", orderWord(cfg.Unordered), herald.DefaultConcurrency, cfg.Partitions, n, cfg.Keys)
	if len(sides[0]) > 1 {
		heraldDoes = fmt.Sprintf("Subscribe, %s, defaults (%d handlers), %d partitions, %d events per round, %d keys", orderWord(cfg.Unordered), herald.DefaultConcurrency, cfg.Partitions, n, cfg.Keys)
	}
	res.Phases = []Phase{
		newPhase("consume", sides[0], sides[1], heraldDoes,
			fmt.Sprintf("XREADGROUP COUNT %d + XACK, a goroutine per stream, %d streams", rawBatch, cfg.Partitions)),
		// The same Herald figure against raw reading of entries of
		// Herald's shape: what the raw line above would cost if its
		// entries carried the event id and key that Herald stores.
		newPhase("consume-herald-entries", sides[0], sides[2], heraldDoes+" (the consume line's run)",
			fmt.Sprintf("XREADGROUP COUNT %d + XACK over the streams of a topic filled by PublishBatch (entries i, k, d: Herald's shape), a goroutine per stream", rawBatch)),
	}
	return res, nil
}

// rawConsumeHeraldEntries fills a fresh topic with n events through
// PublishBatch, over the same keys as the Herald side (not measured), then
// consumes its partition streams exactly like rawConsume: XREADGROUP COUNT
// rawBatch + one XACK per batch, a goroutine per stream, timed until every
// entry was acknowledged. The entries are what Herald stores (id, key and
// data fields), so the difference to the Herald side is the engine alone.
func (b *bench) rawConsumeHeraldEntries(ctx context.Context, round int, n int64) (Side, error) {
	topic, err := b.topic(ctx, roundName("consume-entries", round))
	if err != nil {
		return Side{}, err
	}
	keys := make([]string, b.cfg.Keys)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	var next atomic.Int64
	err = forEach(ctx, b.cfg.Publishers, func(ctx context.Context, _ int) error {
		evs := make([]herald.Event, rawBatch)
		for ctx.Err() == nil {
			k := next.Add(rawBatch) - rawBatch
			if k >= n {
				return nil
			}
			m := int(min(rawBatch, n-k))
			for i := range m {
				evs[i] = herald.Event{Key: keys[(k+int64(i))%int64(len(keys))], Data: b.payload}
			}
			if _, err := b.c.PublishBatch(ctx, topic, evs[:m]); err != nil {
				return fmt.Errorf("fill the backlog: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return Side{}, err
	}
	ti, err := b.c.TopicInfo(ctx, topic)
	if err != nil {
		return Side{}, err
	}
	streams := make([]string, len(ti.Partitions))
	for i, p := range ti.Partitions {
		streams[i] = p.Stream
		if err := b.db.RawCreateGroup(ctx, p.Stream, "rawbench", "0"); err != nil {
			return Side{}, err
		}
	}
	return b.rawDrain(ctx, streams, "rawbench", n)
}

// stripedCounter counts handled events on 64 cache lines chosen by the
// event's key, so that the benchmark's trivial handler does not make every
// handler goroutine contend on one atomic (the raw side counts once per
// batch).
type stripedCounter struct {
	c [64]struct {
		n atomic.Int64
		_ [56]byte
	}
}

func (s *stripedCounter) add(key string) {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	s.c[h%64].n.Add(1)
}

func (s *stripedCounter) load() int64 {
	var t int64
	for i := range s.c {
		t += s.c[i].n.Load()
	}
	return t
}

// subOpts are the consume bench's subscription options.
func (b *bench) subOpts() []herald.SubscribeOption {
	opts := []herald.SubscribeOption{herald.From(herald.StartBeginning)}
	if b.cfg.Unordered {
		opts = append(opts, herald.Unordered())
	}
	return opts
}

func orderWord(unordered bool) string {
	if unordered {
		return "Unordered()"
	}
	return "ordered by key"
}

// drainTimeout bounds how long a backlog filled for d may take to drain.
func drainTimeout(d time.Duration) time.Duration { return 30*time.Second + 20*d }

// heraldConsume fills a fresh topic with PublishBatch, for b.span when n
// is 0 or else with n events, and measures one Subscribe consuming it. It
// returns the side and how many events the backlog held.
func (b *bench) heraldConsume(ctx context.Context, round int, n int64) (Side, int64, error) {
	topic, err := b.topic(ctx, roundName("consume", round))
	if err != nil {
		return Side{}, 0, err
	}
	// Events carry one of cfg.Keys keys in turn: the ordered engine keeps
	// each key's events in order (the keys spread the events over the
	// partitions and the handler goroutines).
	keys := make([]string, b.cfg.Keys)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	var next atomic.Int64
	var stored atomic.Int64
	deadline := time.Now().Add(b.span)
	err = forEach(ctx, b.cfg.Publishers, func(ctx context.Context, _ int) error {
		evs := make([]herald.Event, rawBatch)
		for ctx.Err() == nil && (n > 0 || time.Now().Before(deadline)) {
			k := next.Add(rawBatch) - rawBatch
			m := int64(rawBatch)
			if n > 0 {
				if k >= n {
					return nil
				}
				m = min(m, n-k)
			}
			for i := range m {
				evs[i] = herald.Event{Key: keys[(k+i)%int64(len(keys))], Data: b.payload}
			}
			if _, err := b.c.PublishBatch(ctx, topic, evs[:m]); err != nil {
				return fmt.Errorf("fill the backlog: %w", err)
			}
			stored.Add(m)
		}
		return nil
	})
	if err != nil {
		return Side{}, 0, err
	}
	n = stored.Load()

	var handled stripedCounter
	m := b.meter(ctx)
	sub, err := b.c.Subscribe(ctx, topic, "bench", herald.HandlerFunc(func(ctx context.Context, msg *herald.Message) error {
		handled.add(msg.Key)
		return nil
	}), b.subOpts()...)
	if err != nil {
		return Side{}, 0, err
	}
	defer func() {
		// Stop, and wait until the subscription has released its leases:
		// cleanup deletes the topic's keys after this, and a release that
		// came later would leave its lease log behind.
		sub.Stop()
		select {
		case <-sub.Done():
		case <-time.After(10 * time.Second):
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, drainTimeout(b.span))
	defer cancel()
	for handled.load() < n && wctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	// Handled is counted before the acknowledgement is sent: the run ends
	// when Redis holds nothing pending for the group.
	var end time.Time
	for wctx.Err() == nil {
		gs, err := b.c.Groups(wctx, topic)
		if err == nil && len(gs) == 1 && gs[0].Pending == 0 && gs[0].Lag == 0 {
			end = time.Now()
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := ctx.Err(); err != nil {
		return Side{}, 0, err
	}
	if end.IsZero() {
		return Side{}, 0, fmt.Errorf("handled %d of %d events, or acknowledgements missing, after %s; is the server overloaded? try a shorter --duration",
			handled.load(), n, drainTimeout(b.span))
	}
	side := m.stop(ctx, end, handled.load())
	if st := sub.Stats(); st.Failed > 0 || st.RedisErrors > 0 {
		return Side{}, 0, fmt.Errorf("subscription met %d handler failures and %d Redis errors; the figures would not be comparable", st.Failed, st.RedisErrors)
	}
	return side, n, nil
}

func (b *bench) rawConsume(ctx context.Context, round int, n int64) (Side, error) {
	keys := b.rawStreams(roundName("consume", round))
	for _, k := range keys {
		if err := b.db.RawCreateGroup(ctx, k, "bench", "0"); err != nil {
			return Side{}, err
		}
	}
	var next atomic.Int64
	err := forEach(ctx, b.cfg.Publishers, func(ctx context.Context, g int) error {
		for i := g; ctx.Err() == nil; i++ {
			from := next.Add(rawBatch) - rawBatch
			if from >= n {
				return nil
			}
			if err := b.db.RawXAddBatch(ctx, keys[i%len(keys)], b.payload, int(min(rawBatch, n-from))); err != nil {
				return fmt.Errorf("fill the backlog: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return Side{}, err
	}

	return b.rawDrain(ctx, keys, "bench", n)
}

// rawDrain consumes n entries of streams for group: a goroutine per stream
// doing XREADGROUP COUNT rawBatch then one XACK of the batch, timed until
// every entry was acknowledged.
func (b *bench) rawDrain(ctx context.Context, keys []string, group string, n int64) (Side, error) {
	var acked atomic.Int64
	var endOnce sync.Once
	var end time.Time
	m := b.meter(ctx)
	wctx, cancel := context.WithTimeout(ctx, drainTimeout(b.span))
	defer cancel()
	err := forEach(wctx, len(keys), func(ctx context.Context, p int) error {
		for ctx.Err() == nil && acked.Load() < n {
			k, err := b.db.RawReadAck(ctx, keys[p], group, "c", rawBatch, 100, nil)
			if err != nil {
				return err
			}
			if acked.Add(int64(k)) >= n && k > 0 {
				endOnce.Do(func() { end = time.Now() })
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil && wctx.Err() == nil {
		return Side{}, err
	}
	if err := ctx.Err(); err != nil {
		return Side{}, err
	}
	if end.IsZero() {
		return Side{}, fmt.Errorf("acknowledged %d of %d entries after %s; is the server overloaded? try a shorter --duration",
			acked.Load(), n, drainTimeout(b.span))
	}
	return m.stop(ctx, end, acked.Load()), nil
}

package herald

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/redistest"
)

// startEngine runs an engine directly (no Subscription) and returns a stop
// function that cancels reading (drain) or handling too, and waits.
func startEngine(t *testing.T, c *Client, topicName, group string, h Handler, opts ...SubscribeOption) (*engine, func(drain bool)) {
	t.Helper()
	ctx := context.Background()
	o := &subOptions{start: StartBeginning}
	for _, f := range opts {
		f(o)
	}
	if err := o.fill(); err != nil {
		t.Fatal(err)
	}
	tp, err := c.topic(ctx, topicName, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, pk := range tp.parts {
		if err := c.db.EnsureGroup(ctx, pk, group, "0"); err != nil {
			t.Fatal(err)
		}
	}
	fctx, fcancel := context.WithCancel(ctx)
	hctx, hcancel := context.WithCancel(ctx)
	e := newEngine(c, tp, group, h, o, &subStats{}, fctx, hctx)
	done := make(chan struct{})
	go func() { e.run(); close(done) }()
	var once sync.Once
	stop := func(drain bool) {
		once.Do(func() {
			fcancel()
			if !drain {
				hcancel()
			}
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Errorf("engine did not stop within 20s")
			}
			hcancel()
		})
	}
	t.Cleanup(func() { stop(false) })
	return e, stop
}

// seqLog records per key the sequence numbers handled.
type seqLog struct {
	mu   sync.Mutex
	seen map[string][]int
}

func (l *seqLog) add(m *Message) {
	n, _ := strconv.Atoi(string(m.Data))
	l.mu.Lock()
	if l.seen == nil {
		l.seen = map[string][]int{}
	}
	l.seen[m.Key] = append(l.seen[m.Key], n)
	l.mu.Unlock()
}

func (l *seqLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.seen {
		n += len(s)
	}
	return n
}

func publishSeq(t *testing.T, c *Client, topic string, keys, per int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < per; i++ {
		evs := make([]Event, keys)
		for k := range evs {
			evs[k] = Event{Key: fmt.Sprintf("k%d", k), Data: []byte(strconv.Itoa(i))}
		}
		if _, err := c.PublishBatch(ctx, topic, evs); err != nil {
			t.Fatal(err)
		}
	}
}

// waitCond is redistest.WaitFor, the one bounded wait of the tests.
func waitCond(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	redistest.WaitFor(t, d, what, f)
}

func TestEngineOrderedPerKey(t *testing.T) {
	c := testClient(t, 4)
	var log seqLog
	e, stop := startEngine(t, c, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		log.add(m)
		return nil
	}), LeaseTime(time.Second))
	publishSeq(t, c, "t", 50, 40)
	waitCond(t, 20*time.Second, "2000 events", func() bool { return log.count() >= 2000 })
	stop(true)
	for k, s := range log.seen {
		for i, n := range s {
			if n != i {
				t.Fatalf("key %s: handled %v, want 0..39 in order", k, s)
			}
		}
	}
	if st := e.stats.handled.Load(); st != 2000 {
		t.Fatalf("handled %d", st)
	}
	gs, err := c.Groups(context.Background(), "t")
	if err != nil || len(gs) != 1 || gs[0].Pending != 0 {
		t.Fatalf("groups after drain: %+v %v", gs, err)
	}
}

func TestEngineFailingKeyHoldsOnlyItsKey(t *testing.T) {
	c := testClient(t, 1)
	var mu sync.Mutex
	var order []string
	fails := 0
	_, stop := startEngine(t, c, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Key == "K" && string(m.Data) == "0" && fails < 3 {
			fails++
			return errors.New("flaky")
		}
		order = append(order, m.Key+string(m.Data))
		return nil
	}), Backoff(50*time.Millisecond, 100*time.Millisecond))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.PublishBatch(ctx, "t", []Event{{Key: "K", Data: []byte(strconv.Itoa(i))}, {Key: "O", Data: []byte(strconv.Itoa(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	waitCond(t, 10*time.Second, "6 handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 6 })
	stop(true)
	idx := map[string]int{}
	for i, s := range order {
		idx[s] = i
	}
	if !(idx["K0"] < idx["K1"] && idx["K1"] < idx["K2"]) {
		t.Fatalf("K out of order: %v", order)
	}
	if idx["O2"] > idx["K0"] {
		t.Fatalf("other key held back by K's failures: %v", order)
	}
}

// owned lists the partitions an engine currently runs.
func (e *engine) owned() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []int
	for p, ps := range e.parts {
		if ps != nil && ps.alive() {
			out = append(out, p)
		}
	}
	return out
}

func TestFourConsumersTwoPartitionsEachHandoverWithinLease(t *testing.T) {
	c := testClient(t, 8)
	ctx := context.Background()
	var mu sync.Mutex
	var calls []handlerCall
	// A handover takes up to two owner-loop ticks (lease/3, at most 1 s) and
	// the drains of the partitions that move: a 4 s lease leaves 2 s of
	// absolute slack for a loaded machine (with a 600 ms lease, handovers
	// idle took 110-312 ms of the 600, and failed under load).
	const lease = 4 * time.Second
	var engines []*engine
	var stops []func(bool)
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("c%d", i)
		e, stop := startEngine(t, c, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
			st := time.Now()
			time.Sleep(time.Millisecond) // handler work, not a condition
			mu.Lock()
			calls = append(calls, handlerCall{name, m.Partition, st, time.Now()})
			mu.Unlock()
			return nil
		}), Consumer(name), LeaseTime(lease))
		engines, stops = append(engines, e), append(stops, stop)
	}
	waitCond(t, 15*time.Second, "2 partitions each", func() bool {
		for _, e := range engines {
			if len(e.owned()) != 2 {
				return false
			}
		}
		return true
	})
	// Keep events flowing while one consumer stops.
	pubCtx, pubStop := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; pubCtx.Err() == nil; i++ {
			_, _ = c.Publish(pubCtx, "t", Event{Key: fmt.Sprintf("k%d", i%64), Data: []byte(strconv.Itoa(i))}) // fails at the end: cancelled
		}
	}()
	time.Sleep(300 * time.Millisecond) // not a condition: events flow for a while before the stop
	gone := engines[3].owned()
	stopped := time.Now()
	stops[3](false)
	waitCond(t, lease, "the stopped consumer's partitions owned by others within the lease time", func() bool {
		n := 0
		for _, e := range engines[:3] {
			n += len(e.owned())
		}
		return n == 8
	})
	t.Logf("taken over after %v (partitions %v)", time.Since(stopped), gone)
	time.Sleep(300 * time.Millisecond) // not a condition: events flow for a while after the takeover
	pubStop()
	<-pubDone
	for _, s := range stops[:3] {
		s(true)
	}
	// Tenures from the lease logs: a handler call of consumer C on partition
	// p must fall inside one of C's tenures; a tenure ends at its release, or
	// at the next acquisition (the lease ran out).
	tp, _ := c.topic(ctx, "t", false)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) == 0 {
		t.Fatal("no handler calls")
	}
	checkTenures(t, c, tp, calls)
}

// handlerCall is one handler call of a consumer on a partition.
type handlerCall struct {
	consumer   string
	part       int
	start, end time.Time
}

// checkTenures fails t unless every call of consumer C on partition p lies
// inside one of C's tenures of p, read from the partition's lease log.
func checkTenures(t *testing.T, c *Client, tp *topic, calls []handlerCall) {
	t.Helper()
	checked := 0
	for p, pk := range tp.parts {
		hist, err := c.db.LeaseHistory(context.Background(), pk, "g")
		if err != nil {
			t.Fatal(err)
		}
		ts := tenures(t, hist)
		for _, cl := range calls {
			if cl.part != p {
				continue
			}
			ok := false
			for _, tn := range ts {
				if tn.holds(cl.consumer, cl.start, cl.end) {
					ok = true
					break
				}
			}
			if !ok {
				t.Fatalf("partition %d: %s handled an event at %v-%v outside its tenures %+v", p, cl.consumer, cl.start, cl.end, ts)
			}
			checked++
		}
	}
	t.Logf("%d handler calls inside their consumer's tenures", checked)
}

type tenure struct {
	consumer string
	token    int64
	from, to time.Time
}

// handlerOverrun is how long a handler call may end after its tenure did.
// The fence stops handlers from starting, not running ones: a call that
// started just before it may be descheduled past the tenure's end. A second
// owner shows as a call that starts inside another consumer's tenure.
const handlerOverrun = 250 * time.Millisecond

// holds reports whether a handler call of consumer from start to end lies
// in the tenure: it starts inside it (2 ms for the lease log's milliseconds)
// and ends no later than handlerOverrun after it.
func (tn tenure) holds(consumer string, start, end time.Time) bool {
	const ms = 2 * time.Millisecond
	return tn.consumer == consumer && !start.Before(tn.from.Add(-ms)) &&
		(tn.to.IsZero() || (!start.After(tn.to.Add(ms)) && !end.After(tn.to.Add(handlerOverrun))))
}

// tenures parses a lease log (newest first) into tenures, oldest first.
func tenures(t *testing.T, hist []string) []tenure {
	var out []tenure
	for i := len(hist) - 1; i >= 0; i-- {
		var tok, ms, rel int64
		var who, inst string
		if n, _ := fmt.Sscanf(hist[i], "acquire %d %d %s %s", &tok, &ms, &who, &inst); n == 4 {
			if len(out) > 0 && out[len(out)-1].to.IsZero() {
				out[len(out)-1].to = time.UnixMilli(ms) // the previous lease ran out
			}
			out = append(out, tenure{consumer: who, token: tok, from: time.UnixMilli(ms)})
			continue
		}
		if n, _ := fmt.Sscanf(hist[i], "release %d %d %d %s %s", &rel, &tok, &ms, &who, &inst); n == 5 {
			if len(out) == 0 || out[len(out)-1].token != tok {
				t.Fatalf("release of token %d that is not the current tenure: %v", tok, hist)
			}
			out[len(out)-1].to = time.UnixMilli(rel)
			continue
		}
		t.Fatalf("lease log line %q", hist[i])
	}
	for i := 1; i < len(out); i++ {
		if out[i].token != out[i-1].token+1 || out[i].from.Before(out[i-1].to) {
			t.Fatalf("tenures overlap or skip: %+v", out)
		}
	}
	return out
}

// More consumers than partitions: the extra ones own nothing (hot standbys)
// and take over when an owner stops.
func TestEngineHotStandbyTakesOver(t *testing.T) {
	c := testClient(t, 2)
	var es []*engine
	var stops []func(bool)
	for i := 0; i < 3; i++ {
		e, stop := startEngine(t, c, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error { return nil }),
			Consumer(fmt.Sprintf("c%d", i)), LeaseTime(600*time.Millisecond))
		es, stops = append(es, e), append(stops, stop)
	}
	owners := func() (n, idle int) {
		for _, e := range es {
			if k := len(e.owned()); k > 0 {
				n += k
			} else {
				idle++
			}
		}
		return
	}
	waitCond(t, 15*time.Second, "2 partitions owned, one standby", func() bool { n, idle := owners(); return n == 2 && idle == 1 })
	for i, e := range es {
		if len(e.owned()) > 0 {
			stops[i](false)
			es = append(es[:i], es[i+1:]...)
			break
		}
	}
	waitCond(t, 10*time.Second, "the standby to take over", func() bool { n, idle := owners(); return n == 2 && idle == 0 })
}

// A consumer cut off from Redis cannot renew its leases: it stops handling
// its partitions before another consumer takes them over (checked against
// the lease logs, with the handler calls of both).
func TestEngineCutOffConsumerFencedBeforeTakeover(t *testing.T) {
	c1 := testClient(t, 4)
	c2, err := New(context.Background(), Config{URL: redistest.URL(t), Namespace: c1.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	var mu sync.Mutex
	var calls []handlerCall
	h := func(name string, d time.Duration) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) error {
			st := time.Now()
			time.Sleep(d) // handler work, not a condition
			mu.Lock()
			calls = append(calls, handlerCall{name, m.Partition, st, time.Now()})
			mu.Unlock()
			return nil
		})
	}
	const lease = 600 * time.Millisecond
	// b is slow: when it is cut off, its workers hold more than a lease time
	// of work, which the fence must cut short.
	e1, stop1 := startEngine(t, c1, "t", "g", h("a", 200*time.Microsecond), Consumer("a"), LeaseTime(lease))
	e2, _ := startEngine(t, c2, "t", "g", h("b", 5*time.Millisecond), Consumer("b"), LeaseTime(lease))
	waitCond(t, 15*time.Second, "2 partitions each", func() bool { return len(e1.owned()) == 2 && len(e2.owned()) == 2 })
	ctx, cancel := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ctx.Err() == nil; i++ {
			_, _ = c1.Publish(ctx, "t", Event{Key: fmt.Sprintf("k%d", i%32), Data: []byte(strconv.Itoa(i))}) // fails at the end: cancelled
		}
	}()
	time.Sleep(200 * time.Millisecond) // not a condition: events flow for a while before the cut
	cut := time.Now()
	c2.db.Close() // b is cut off: no renewal, no ack, no read
	waitCond(t, 10*time.Second, "a owns every partition", func() bool { return len(e1.owned()) == 4 })
	if n := len(e2.owned()); n != 0 {
		t.Fatalf("cut-off consumer still believes it owns %d partitions", n)
	}
	time.Sleep(200 * time.Millisecond) // not a condition: events flow for a while after the takeover
	cancel()
	<-pubDone
	stop1(true)
	tp, _ := c1.topic(context.Background(), "t", false)
	mu.Lock()
	defer mu.Unlock()
	after, last := 0, cut
	for _, cl := range calls {
		if cl.consumer == "b" && cl.start.After(cut) {
			after++
			if cl.end.After(last) {
				last = cl.end
			}
		}
	}
	t.Logf("b handled %d events after it was cut off, the last ending %v after the cut", after, last.Sub(cut))
	checkTenures(t, c1, tp, calls)
}

// An event retried and acknowledged while the rest of its read batch is
// still being handled is settled once: the in-flight budget comes back
// exactly (it was given back twice when the batch counted it again).
func TestEngineRetryInsideBatchSettledOnce(t *testing.T) {
	c := testClient(t, 1)
	var fails atomic.Int32
	var handled atomic.Int32
	e, stop := startEngine(t, c, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		switch m.Key {
		case "fast":
			if fails.Add(1) == 1 {
				return errors.New("once")
			}
		case "slow":
			time.Sleep(300 * time.Millisecond) // handler work, not a condition
		}
		handled.Add(1)
		return nil
	}), Backoff(time.Millisecond, 2*time.Millisecond), Concurrency(2))
	if _, err := c.PublishBatch(context.Background(), "t", []Event{{Key: "slow", Data: []byte("s")}, {Key: "fast", Data: []byte("f")}}); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 5*time.Second, "both handled", func() bool { return handled.Load() == 2 })
	stop(true)
	if e.budget.free != e.o.maxInFlight {
		t.Fatalf("in-flight budget after the stop: %d free of %d", e.budget.free, e.o.maxInFlight)
	}
	for _, p := range e.parts {
		if p != nil && p.inflight.Load() != 0 {
			t.Fatalf("partition %d: %d in flight after the stop", p.idx, p.inflight.Load())
		}
	}
}

// A former owner's read that reaches Redis after its lease ran out (its
// process was paused before it sent it, or Redis stalled with it queued)
// takes entries the new owner has not seen. The new owner must handle them
// before the later entries of their keys, at once, not after a timeout; on
// the partition's stream (checked with every read) and on the group's
// retry stream (checked when a read returns entries of it).
func TestOrderedLateReadOfFormerOwnerKeepsOrder(t *testing.T) {
	t.Parallel()
	for _, retry := range []bool{false, true} {
		t.Run(fmt.Sprintf("retry=%v", retry), func(t *testing.T) {
			c := testClient(t, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var log seqLog
			e, _ := startEngine(t, c, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
				log.add(m)
				return nil
			}), LeaseTime(10*time.Second)) // far longer than the test: no timeout may rescue the order
			if _, err := c.Publish(ctx, "t", Event{Key: "k", Data: []byte("0")}); err != nil {
				t.Fatal(err)
			}
			waitCond(t, 10*time.Second, "the first event handled (the partition is owned and read)", func() bool { return log.count() == 1 })
			tp, err := c.topic(ctx, "t", false)
			if err != nil {
				t.Fatal(err)
			}
			stream := tp.parts[0].Stream
			if retry {
				stream = tp.parts[0].Retry("g")
			}
			// In one script: events 1-3 appended, a read by the former owner
			// ("ghost") takes 1 and 2, event 4 appended. The owner's blocked
			// read is served after the script: it gets 3 and 4.
			add := "redis.call('XADD', KEYS[1], '*', '" + codec.FieldKey + "', 'k', '" + codec.FieldData + "', '%d');"
			script := fmt.Sprintf(add+add+add, 1, 2, 3) +
				"redis.call('XREADGROUP', 'GROUP', 'g', 'ghost', 'COUNT', 2, 'STREAMS', KEYS[1], '>');" +
				fmt.Sprintf(add, 4) + "return 1"
			if _, err := c.db.Do(ctx, "EVAL", script, "1", stream); err != nil {
				t.Fatal(err)
			}
			waitCond(t, 10*time.Second, "events 1-4 handled", func() bool { return log.count() == 5 })
			log.mu.Lock()
			got := log.seen["k"]
			log.mu.Unlock()
			if fmt.Sprint(got) != "[0 1 2 3 4]" {
				t.Fatalf("key k handled in the order %v, want [0 1 2 3 4]", got)
			}
			if n := e.stats.reclaimed.Load(); n != 2 {
				t.Fatalf("reclaimed %d, want the 2 entries of the former owner", n)
			}
			waitCond(t, 10*time.Second, "nothing pending", func() bool {
				gs, err := c.Groups(ctx, "t")
				return err == nil && len(gs) == 1 && gs[0].Pending == 0
			})
		})
	}
}

// A read that finds the subscription caught up (a few events) is handled by
// the reader itself while the worker is idle and its handler cheap; a
// handler seen to be slow goes back to its worker goroutine. Order per key
// holds through both ways.
func TestEngineReaderHandlesSmallReadsOfCheapHandlers(t *testing.T) {
	c := testClient(t, 2)
	var log seqLog
	var slow atomic.Bool
	// A bound that a trivial handler meets on a loaded machine under -race,
	// and a 3 ms handler does not.
	inlineMs := SubscribeOption(func(o *subOptions) { o.inlineMax = time.Millisecond })
	e, stop := startEngine(t, c, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		if slow.Load() {
			time.Sleep(3 * time.Millisecond)
		}
		log.add(m)
		return nil
	}), LeaseTime(time.Second), inlineMs)
	ctx := context.Background()
	const keys = 4
	publishOne := func(i int) {
		t.Helper()
		if _, err := c.Publish(ctx, "t", Event{Key: fmt.Sprintf("k%d", i%keys), Data: []byte(strconv.Itoa(i / keys))}); err != nil {
			t.Fatal(err)
		}
		waitCond(t, 10*time.Second, fmt.Sprintf("event %d handled", i), func() bool { return log.count() > i })
	}
	for i := range 40 {
		publishOne(i)
	}
	fast := e.stats.inline.Load()
	if fast == 0 {
		t.Fatalf("no event of 40 single reads was handled by the reader")
	}
	slow.Store(true)
	for i := 40; i < 80; i++ {
		publishOne(i)
	}
	stop(true)
	// Each worker may run one slow call inline before it is seen slow.
	if n := e.stats.inline.Load() - fast; n > keys {
		t.Fatalf("%d slow handler calls ran on the reader, want at most %d (one per worker)", n, keys)
	}
	for k, s := range log.seen {
		for i, n := range s {
			if n != i {
				t.Fatalf("key %s: handled %v, want 0..19 in order", k, s)
			}
		}
	}
	gs, err := c.Groups(ctx, "t")
	if err != nil || len(gs) != 1 || gs[0].Pending != 0 {
		t.Fatalf("groups after drain: %+v %v; want nothing pending (the reader's acks were sent)", gs, err)
	}
}

// A run whose fence passed while it still had events of a key to handle
// (a renewal that took too long: Redis stalled, the process paused) stops
// for good, even when that renewal then succeeds: its skipped events stay
// pending and the next run handles them, in order, before any later event
// of their key. (A late renewal used to revive the run, which went on with
// new events while the skipped ones stayed pending under its own name.)
func TestEngineLateRenewalDoesNotReviveFencedRun(t *testing.T) {
	c := testClient(t, 1)
	var log seqLog
	block := make(chan struct{})
	var first sync.Once
	entered := make(chan struct{})
	e, stop := startEngine(t, c, "t", "g", HandlerFunc(func(ctx context.Context, m *Message) error {
		if string(m.Data) == "0" {
			first.Do(func() { close(entered); <-block })
		}
		log.add(m)
		return nil
	}), LeaseTime(time.Second), Concurrency(1))
	defer stop(false)
	publishSeq(t, c, "t", 1, 20) // k0: 0..19, all for the one worker
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler of event 0 did not start")
	}
	// The fence passes while event 0 is being handled and 1..19 wait for it.
	e.mu.Lock()
	p := e.parts[0]
	e.mu.Unlock()
	p.validUntil.Store(e.now() - 1)
	close(block)
	waitCond(t, 5*time.Second, "the fenced run to stop", func() bool { return p.closed.Load() })
	// The renewals go on succeeding (Redis is fine): the run stays closed,
	// and a new one takes the partition once the lease has run out.
	publishSeq(t, c, "t", 1, 5) // 0..4 again: later events of k0
	waitCond(t, 20*time.Second, "every event handled", func() bool { return log.count() >= 25 })
	log.mu.Lock()
	got := append([]int(nil), log.seen["k0"]...)
	log.mu.Unlock()
	want := []int{0}
	for i := 1; i < 20; i++ {
		want = append(want, i)
	}
	want = append(want, 0, 1, 2, 3, 4)
	if !slices.Equal(got[:min(len(got), len(want))], want) || len(got) != len(want) {
		t.Fatalf("k0 handled %v, want %v (the skipped events before the later ones)", got, want)
	}
}

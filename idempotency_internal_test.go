package herald

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldbus/herald/internal/codec"
	"github.com/heraldbus/herald/internal/rdb"
	"github.com/heraldbus/herald/internal/redistest"
)

// A batch whose reply is lost (the first send did land) is sent again with the
// same sequence number and stored once; the caller gets the first positions.
func TestRetriedBatchStoredOnce(t *testing.T) {
	c, err := New(context.Background(), Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t), DefaultTopic: TopicConfig{Partitions: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var lost atomic.Int32
	c.testHookAppended = func() error {
		if lost.Add(1) == 1 {
			return errors.New("i/o timeout (simulated lost reply)")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs := []Event{{Key: "a", Data: []byte("1")}, {Key: "a", Data: []byte("2")}, {Key: "a", Data: []byte("3")}}
	ps, err := c.PublishBatch(ctx, "t", evs)
	if err != nil {
		t.Fatal(err)
	}
	if lost.Load() != 2 {
		t.Fatalf("append sent %d times, want 2 (one lost reply, one retry)", lost.Load())
	}
	ti, err := c.TopicInfo(ctx, "t")
	if err != nil || ti.Length != 3 {
		t.Fatalf("stored %d events (%v), want 3", ti.Length, err)
	}
	stored, _ := c.Events(ctx, "t", Query{})
	for i, p := range ps {
		if stored[i].Position != p.ID || string(stored[i].Data) != string(evs[i].Data) {
			t.Fatalf("position %d = %v, stored %+v", i, p, stored[i])
		}
	}
}

// TestPlainAppendRetriedStoredOnce: an event published by itself (plain
// XADD, no script) whose reply is lost is not stored again by the retry:
// the retry kills the connection the first attempt went out on and finds
// the event in the partition's tail.
func TestPlainAppendRetriedStoredOnce(t *testing.T) {
	c, err := New(context.Background(), Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t), DefaultTopic: TopicConfig{Partitions: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sends atomic.Int32
	c.testHookAppended = func() error {
		if sends.Add(1) == 1 {
			return errors.New("i/o timeout (simulated lost reply)")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := c.Publish(ctx, "t", Event{Data: []byte("once")})
	if err != nil {
		t.Fatal(err)
	}
	if sends.Load() != 2 {
		t.Fatalf("append sent %d times, want 2 (one lost reply, one retry)", sends.Load())
	}
	stored, err := c.Events(ctx, "t", Query{})
	if err != nil || len(stored) != 1 || stored[0].Position != p.ID {
		t.Fatalf("stored %+v (%v), want the one event at %s", stored, err, p.ID)
	}
	// The plain way writes no producer state.
	tp, _ := c.topic(ctx, "t", false)
	if kv, err := c.db.Do(ctx, "KEYS", tp.parts[0].Producer("*")); err != nil || len(kv.([]any)) != 0 {
		t.Fatalf("producer states %v (%v), want none", kv, err)
	}
}

// TestPlainAppendFencesLostConnection: an attempt still queued on the
// connection it was lost on cannot land after the retry looked at the tail:
// the retry kills that connection first.
func TestPlainAppendFencesLostConnection(t *testing.T) {
	c, err := New(context.Background(), Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t), DefaultTopic: TopicConfig{Partitions: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.CreateTopic(ctx, "t", TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	tp, _ := c.topic(ctx, "t", false)
	batch := func(seq int64, prefix string) *rdb.AppendBatch {
		return &rdb.AppendBatch{Keys: tp.parts[0], Producer: "p", Seq: seq, StateTTL: 60000,
			DedupeIDs: make([]string, 3), Fields: plainBatch(prefix, 3)}
	}
	var old rdb.Fence
	if _, err := c.db.AppendPlain(ctx, &old, batch(1, "a"), 0, 0); err != nil {
		t.Fatal(err)
	}
	// Batch 2 is "lost" on old's connection; the retry goes on a new one.
	lost := old
	old.Lost(2)
	res, err := c.db.AppendPlain(ctx, &old, batch(2, "b"), 0, 0)
	if err != nil || res.Replay {
		t.Fatalf("retry of a batch that never landed: %+v, %v", res, err)
	}
	// The lost connection was killed: the first attempt, late, cannot land.
	if _, err := c.db.AppendPlain(ctx, &lost, batch(2, "b"), 0, 0); err == nil {
		t.Fatal("the lost attempt's connection still appends after the retry")
	}
	// A lost reply of a batch that did land: the retry finds it.
	if _, err := c.db.AppendPlain(ctx, &old, batch(3, "c"), 0, 0); err != nil {
		t.Fatal(err)
	}
	old.Lost(3)
	res, err = c.db.AppendPlain(ctx, &old, batch(3, "c"), 0, 0)
	if err != nil || !res.Replay || res.Positions[2] == "" {
		t.Fatalf("retry of a batch that landed: %+v, %v; want its positions", res, err)
	}
	if n, err := c.db.Do(ctx, "XLEN", tp.parts[0].Stream); err != nil || n != int64(9) {
		t.Fatalf("stream length %d (%v), want 9: nothing stored twice", n, err)
	}
}

// plainBatch is n keyless events of an id and data, the shape that goes
// through the transactional append.
func plainBatch(prefix string, n int) [][]string {
	fs := make([][]string, n)
	for i := range fs {
		fs[i] = []string{"i", prefix + strconv.Itoa(i), "d", "x"}
	}
	return fs
}

// TestTransactionalBatchRetriedStoredOnce: a batch big enough for the
// MULTI/EXEC append whose reply is lost is answered from the stream and
// stored once.
func TestTransactionalBatchRetriedStoredOnce(t *testing.T) {
	c, err := New(context.Background(), Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t), DefaultTopic: TopicConfig{Partitions: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.cfg.appendWay = wayMulti
	var sends atomic.Int32
	c.testHookAppended = func() error {
		if sends.Add(1) == 1 {
			return errors.New("i/o timeout (simulated lost reply)")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs := make([]Event, 2*multiMin)
	for i := range evs {
		evs[i] = Event{Data: []byte(strconv.Itoa(i))}
	}
	ps, err := c.PublishBatch(ctx, "t", evs)
	if err != nil {
		t.Fatal(err)
	}
	if sends.Load() != 2 {
		t.Fatalf("append sent %d times, want 2 (one lost reply, one retry)", sends.Load())
	}
	stored, err := c.Events(ctx, "t", Query{Limit: 1000})
	if err != nil || len(stored) != len(evs) {
		t.Fatalf("stored %d events (%v), want %d", len(stored), err, len(evs))
	}
	for i, p := range ps {
		if stored[i].Position != p.ID || string(stored[i].Data) != string(evs[i].Data) {
			t.Fatalf("position %d = %v, stored %+v", i, p, stored[i])
		}
	}
	// It went through the transaction: the producer state has no positions.
	tp, _ := c.topic(ctx, "t", false)
	kv, err := c.db.Do(ctx, "KEYS", tp.parts[0].Producer("*"))
	keys, _ := kv.([]any)
	if err != nil || len(keys) != 1 {
		t.Fatalf("producer states %v (%v), want one", keys, err)
	}
	if st, _ := c.db.Do(ctx, "GET", keys[0].(string)); st != "1|*" {
		t.Fatalf("producer state %q, want 1|* (a transactional append)", st)
	}
}

// TestFenceAbortsLateAttempt: an attempt whose WATCH was set before the
// batch was appended on another connection (a first attempt that reaches
// Redis after its retry) does not store the batch again; it answers with
// the positions of the append that landed.
func TestFenceAbortsLateAttempt(t *testing.T) {
	c, err := New(context.Background(), Config{URL: redistest.URL(t), Namespace: redistest.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tp, err := c.topic(ctx, "t", true)
	if err != nil {
		t.Fatal(err)
	}
	batch := func(seq int64, prefix string) *rdb.AppendBatch {
		return &rdb.AppendBatch{Keys: tp.parts[0], Producer: "p", Seq: seq, StateTTL: 3600000,
			DedupeIDs: make([]string, multiMin), Fields: plainBatch(prefix, multiMin)}
	}
	var old, fresh rdb.Fence
	defer old.Close()
	defer fresh.Close()
	if _, err := c.db.AppendMulti(ctx, &old, batch(1, "a")); err != nil { // old's WATCH is set after this
		t.Fatal(err)
	}
	landed, err := c.db.AppendMulti(ctx, &fresh, batch(2, "b")) // the retry, on another connection
	if err != nil || landed.Replay {
		t.Fatalf("retry: %+v, %v; want a first append", landed, err)
	}
	late, err := c.db.AppendMulti(ctx, &old, batch(2, "b")) // the first attempt, late
	if err != nil || !late.Replay {
		t.Fatalf("late attempt: replay %v, %v; want it answered as a replay", late.Replay, err)
	}
	for i := range landed.Positions {
		if late.Positions[i] != landed.Positions[i] {
			t.Fatalf("late attempt position %d = %s, the batch is at %s", i, late.Positions[i], landed.Positions[i])
		}
	}
	// A script append on the lane in between (it touches the watched state)
	// does not break the next transaction.
	if _, err := c.db.Append(ctx, &rdb.AppendBatch{Keys: tp.parts[0], Producer: "p", Seq: 3, StateTTL: 3600000,
		DedupeIDs: []string{""}, Fields: plainBatch("c", 1)}); err != nil {
		t.Fatal(err)
	}
	if res, err := c.db.AppendMulti(ctx, &old, batch(4, "d")); err != nil || res.Replay {
		t.Fatalf("transaction after a script append: replay %v, %v", res.Replay, err)
	}
	if n, err := c.db.Do(ctx, "XLEN", tp.parts[0].Stream); err != nil || n != int64(3*multiMin+1) {
		t.Fatalf("stream length %d (%v), want %d: nothing stored twice", n, err, 3*multiMin+1)
	}
}

// TestBatchesSurviveKilledConnections: big batches (transactions) and small
// ones (the script) are published while the server kills every client
// connection again and again; every publish succeeds after its retries,
// and the stream holds each event exactly once.
func TestBatchesSurviveKilledConnections(t *testing.T) {
	// The client gets a name of its own, so that only its connections are
	// killed (CLIENT LIST, then CLIENT KILL ID).
	opt, err := rdb.ParseURL(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	opt.ClientName = "herald-kill-test"
	opt.DisableCache = true
	rc, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var logs strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(b)
	}), nil))
	c, err := New(context.Background(), Config{Redis: rc, Namespace: redistest.Namespace(t), DefaultTopic: TopicConfig{Partitions: 2}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.CreateTopic(ctx, "t", TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	admin, err := rdb.Open(ctx, rdb.Options{URL: redistest.URL(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// 3,000 older entries per partition: a recovery that reads the tail
	// back to the batch's time takes several pages, each a round trip the
	// killer can cut (a cut scan must leave the fence in place).
	const filler = 3000
	tp, err := c.topic(ctx, "t", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, pk := range tp.parts {
		if _, err := admin.Do(ctx, "EVAL", "for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', '"+codec.FieldData+"', 'fill-' .. i) end return 1",
			"1", pk.Stream, strconv.Itoa(filler)); err != nil {
			t.Fatal(err)
		}
	}
	killAll := func() int {
		lv, err := admin.Do(ctx, "CLIENT", "LIST")
		list := rdb.Text(lv)
		if err != nil {
			return 0
		}
		n := 0
		for _, line := range strings.Split(list, "\n") {
			if !strings.Contains(line, " name="+opt.ClientName+" ") {
				continue
			}
			id, err := strconv.ParseInt(strings.TrimPrefix(strings.Fields(line)[0], "id="), 10, 64)
			if err != nil {
				continue
			}
			if _, err := admin.Do(ctx, "CLIENT", "KILL", "ID", strconv.FormatInt(id, 10)); err == nil {
				n++
			}
		}
		return n
	}
	stop := make(chan struct{})
	killed := make(chan int)
	go func() {
		n := 0
		defer func() { killed <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			n += killAll()
		}
	}()
	const publishers, rounds = 4, 30
	var wg sync.WaitGroup
	var published atomic.Int64
	for g := range publishers {
		wg.Go(func() {
			for r := range rounds {
				size := 2 * multiMin // plain XADDs, pipelined
				if r%3 != 0 {
					size = 5
				}
				evs := make([]Event, size)
				for i := range evs {
					evs[i] = Event{Data: []byte(strconv.Itoa(g*1000+r) + "-" + strconv.Itoa(i))}
					if r%3 == 1 {
						evs[i].ID = string(evs[i].Data) // deduplicated: the script
					}
				}
				if r%3 == 2 {
					for _, ev := range evs { // one event per call: plain XADD
						if _, err := c.Publish(ctx, "t", ev); err != nil {
							t.Errorf("publisher %d round %d: %v", g, r, err)
							return
						}
					}
				} else if _, err := c.PublishBatch(ctx, "t", evs); err != nil {
					t.Errorf("publisher %d round %d: %v", g, r, err)
					return
				}
				published.Add(int64(size))
			}
		})
	}
	wg.Wait()
	close(stop)
	n := <-killed
	logMu.Lock()
	retries := strings.Count(logs.String(), "publish retry")
	logMu.Unlock()
	if retries == 0 {
		t.Fatalf("%d connections killed, but no publish was retried; the test proves little", n)
	}
	t.Logf("%d connections killed, %d publish retries", n, retries)
	events, err := c.Events(ctx, "t", Query{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range events {
		if strings.HasPrefix(string(e.Data), "fill-") {
			continue
		}
		if seen[string(e.Data)] {
			t.Fatalf("event %s stored twice", e.Data)
		}
		seen[string(e.Data)] = true
	}
	if int64(len(seen)) != published.Load() || len(events) != len(seen)+filler*len(tp.parts) {
		t.Fatalf("stored %d events (%d distinct, %d filler), published %d", len(events), len(seen), filler*len(tp.parts), published.Load())
	}
}

// writerFunc adapts a function to io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

package herald_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldbus/herald"
	"github.com/heraldbus/herald/internal/redistest"
)

// consumerEnv carries a consumer process's settings when the test binary
// runs as one (see runConsumerProcess).
const consumerEnv = "HERALD_TEST_CONSUMER"

// runConsumerProcess is called first by TestMain: when the binary was started
// by a test as a consumer process, it subscribes, appends "key seq consumer"
// to the shared log file for every event it handles (one write each, O_APPEND:
// the file's order is the order of handling), and runs until SIGTERM (drain)
// or SIGKILL.
func runConsumerProcess() (int, bool) {
	spec := os.Getenv(consumerEnv)
	if spec == "" {
		return 0, false
	}
	f := strings.Split(spec, "|")
	if len(f) != 7 {
		fmt.Fprintln(os.Stderr, "bad", consumerEnv, spec)
		return 2, true
	}
	url, ns, topic, group, name, path := f[0], f[1], f[2], f[3], f[4], f[5]
	leaseMS, _ := strconv.Atoi(f[6])
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, err := herald.New(ctx, herald.Config{URL: url, Namespace: ns})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	defer c.Close()
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	sub, err := c.Subscribe(context.Background(), topic, group, herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		_, err := out.WriteString(m.Key + " " + string(m.Data) + " " + name + "\n")
		time.Sleep(200 * time.Microsecond) // a handler that takes some time: a kill finds work in flight
		return err
	}), herald.Consumer(name), herald.From(herald.StartBeginning), herald.LeaseTime(time.Duration(leaseMS)*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	fmt.Println("ready")
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sub.Drain(dctx); err != nil {
		fmt.Fprintln(os.Stderr, "drain:", err)
		return 1, true
	}
	return 0, true
}

// startConsumerProcess starts the test binary as a consumer process.
func startConsumerProcess(t *testing.T, url, ns, topic, group, name, log string, lease time.Duration) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), consumerEnv+"="+strings.Join([]string{url, ns, topic, group, name, log, strconv.Itoa(int(lease.Milliseconds()))}, "|"))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ready <- sc.Scan() && sc.Text() == "ready"
		for sc.Scan() {
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("consumer process %s did not start", name)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("consumer process %s not ready after 20s", name)
	}
	return cmd
}

// handlingLog reads "key seq consumer" lines in handling order.
type handlingLog struct {
	keys  map[string][]int
	by    map[string]int // events per consumer
	lines int
}

func readHandlingLog(t *testing.T, path string) handlingLog {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	l := handlingLog{keys: map[string][]int{}, by: map[string]int{}}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue // the last line of a killed process may be cut short
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		l.keys[f[0]] = append(l.keys[f[0]], n)
		l.by[f[2]]++
		l.lines++
	}
	return l
}

// distinct counts the (key, seq) pairs handled.
func (l handlingLog) distinct() int {
	n := 0
	for _, s := range l.keys {
		seen := map[int]bool{}
		for _, v := range s {
			seen[v] = true
		}
		n += len(seen)
	}
	return n
}

// checkKeyOrder checks that each key's events were handled in increasing
// sequence, 0..per-1, none missing; a redelivery may only go back to repeat
// a run of events (those a killed consumer handled but had not acknowledged)
// and must then go on in order from there.
func checkKeyOrder(t *testing.T, l handlingLog, keys, per int) (repeats int) {
	t.Helper()
	if len(l.keys) != keys {
		t.Fatalf("%d keys handled, want %d", len(l.keys), keys)
	}
	for k, s := range l.keys {
		max := -1
		prev := -1
		for i, v := range s {
			switch {
			case v == prev+1 && v <= max+1:
			case v <= max && i > 0:
				repeats++ // a redelivery: the run restarts at an earlier event
			default:
				t.Fatalf("key %s: event %d handled after %d (max so far %d): %v", k, v, prev, max, s)
			}
			prev = v
			if v > max {
				max = v
			}
		}
		if max != per-1 {
			t.Fatalf("key %s: last event handled is %d, want %d", k, max, per-1)
		}
	}
	return repeats
}

// Must show (issue 12): 8 partitions, 200 keys x 300 events, three consumer
// processes; one is SIGKILLed midway and a fourth joins: every key's events
// are handled in increasing sequence, none missing.
func TestOrderedAcrossConsumerProcessesKillAndJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts consumer processes")
	}
	const keys, per, parts = 200, 300, 8
	const lease = time.Second
	c := newClient(t)
	ctx := ctxT(t, 3*time.Minute)
	if err := c.CreateTopic(ctx, "orders", herald.TopicConfig{Partitions: parts}); err != nil {
		t.Fatal(err)
	}
	url, ns := redistest.URL(t), c.Namespace()
	log := t.TempDir() + "/handled.log"
	procs := map[string]*exec.Cmd{}
	for _, name := range []string{"p1", "p2", "p3"} {
		procs[name] = startConsumerProcess(t, url, ns, "orders", "g", name, log, lease)
	}
	// Publish at a steady pace, so that the kill and the join land midway.
	// The second half waits for the joining consumer to hold a lease: else
	// the others could handle everything before it takes a partition.
	var published atomic.Int64
	var pubErr atomic.Pointer[error]
	pubDone := make(chan error, 1)
	joined := make(chan struct{})
	go func() {
		for i := 0; i < per; i++ {
			if i == per/2 {
				select {
				case <-joined:
				case <-ctx.Done():
					pubDone <- ctx.Err()
					return
				}
			}
			evs := make([]herald.Event, keys)
			for k := range evs {
				evs[k] = herald.Event{Key: "k" + strconv.Itoa(k), Data: []byte(strconv.Itoa(i))}
			}
			if _, err := c.PublishBatch(ctx, "orders", evs); err != nil {
				pubErr.Store(&err)
				pubDone <- err
				return
			}
			published.Add(keys)
			time.Sleep(5 * time.Millisecond) // not a condition: paces the publisher
		}
		pubDone <- nil
	}()
	waitFor(t, 60*time.Second, "a third of the events published", func() bool {
		if p := pubErr.Load(); p != nil {
			t.Fatalf("publish: %v", *p)
		}
		return published.Load() >= keys*per/3
	})
	if err := procs["p2"].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = procs["p2"].Wait()
	waitFor(t, 60*time.Second, "half of the events published", func() bool { return published.Load() >= keys*per/2 })
	procs["p4"] = startConsumerProcess(t, url, ns, "orders", "g", "p4", log, lease)
	waitFor(t, 30*time.Second, "the joining consumer to hold a partition's lease", func() bool {
		gs, err := c.Groups(ctx, "orders")
		if err != nil || len(gs) != 1 {
			return false
		}
		for _, p := range gs[0].Partitions {
			if p.Owner == "p4" {
				return true
			}
		}
		return false
	})
	close(joined)
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "every event handled", func() bool { return readHandlingLog(t, log).distinct() == keys*per })
	for _, name := range []string{"p1", "p3", "p4"} {
		_ = procs[name].Process.Signal(syscall.SIGTERM)
		_ = procs[name].Wait()
	}
	l := readHandlingLog(t, log)
	repeats := checkKeyOrder(t, l, keys, per)
	t.Logf("%d handler calls for %d events, %d redelivery runs; per consumer %v", l.lines, keys*per, repeats, l.by)
	if l.by["p4"] == 0 {
		t.Fatalf("the joining consumer handled nothing: %v", l.by)
	}
	gs, err := c.Groups(ctx, "orders")
	if err != nil || len(gs) != 1 || gs[0].Pending != 0 {
		t.Fatalf("group after the run: %+v %v", gs, err)
	}
}

// Must show (issue 12): one consumer with default options handles every key
// in order (the default of 8 handlers took one key's events in any order).
func TestDefaultSubscriptionKeepsKeyOrder(t *testing.T) {
	c := newClient(t, func(cfg *herald.Config) { cfg.DefaultTopic.Partitions = 4 })
	ctx := ctxT(t, 60*time.Second)
	const keys, per = 50, 100
	var mu sync.Mutex
	seen := map[string][]int{}
	total := 0
	_, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		n, _ := strconv.Atoi(string(m.Data))
		if n%7 == 0 {
			time.Sleep(time.Millisecond) // uneven handler times: a racing worker would overtake
		}
		mu.Lock()
		seen[m.Key] = append(seen[m.Key], n)
		total++
		mu.Unlock()
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < per; i++ {
		evs := make([]herald.Event, keys)
		for k := range evs {
			evs[k] = herald.Event{Key: "k" + strconv.Itoa(k), Data: []byte(strconv.Itoa(i))}
		}
		if _, err := c.PublishBatch(ctx, "t", evs); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "every event", func() bool { mu.Lock(); defer mu.Unlock(); return total == keys*per })
	mu.Lock()
	defer mu.Unlock()
	for k, s := range seen {
		for i, n := range s {
			if n != i {
				t.Fatalf("key %s handled out of order: %v", k, s)
			}
		}
	}
}

// Must show (issue 12): an event of key K fails 3 times, then succeeds: K's
// later events are handled after it; other keys' events are not held back.
func TestFailingKeyHoldsBackOnlyItsKey(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 30*time.Second)
	var mu sync.Mutex
	var order []string
	var attempts []int
	fails := 0
	_, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if m.Key == "K" && string(m.Data) == "0" {
			attempts = append(attempts, m.Attempt)
			if fails < 3 {
				fails++
				return errors.New("flaky dependency")
			}
		}
		order = append(order, m.Key+string(m.Data))
		return nil
	}), herald.Backoff(100*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var evs []herald.Event
	for i := 0; i < 5; i++ {
		for _, k := range []string{"K", "A", "B"} {
			evs = append(evs, herald.Event{Key: k, Data: []byte(strconv.Itoa(i))})
		}
	}
	if _, err := c.PublishBatch(ctx, "t", evs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "15 events handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 15 })
	mu.Lock()
	defer mu.Unlock()
	at := map[string]int{}
	for i, s := range order {
		at[s] = i
	}
	for i := 1; i < 5; i++ {
		if at["K"+strconv.Itoa(i)] < at["K"+strconv.Itoa(i-1)] {
			t.Fatalf("K's events out of order: %v", order)
		}
	}
	// The retries take at least 50+100+200ms; the other keys are done long before.
	if at["A4"] > at["K0"] || at["B4"] > at["K0"] {
		t.Fatalf("other keys waited for K: %v", order)
	}
	if fmt.Sprint(attempts) != "[1 2 3 4]" {
		t.Fatalf("attempts of K0 = %v, want [1 2 3 4]", attempts)
	}
}

// A dead-lettered event releases its key: the key's later events are
// handled after it, in order.
func TestDeadLetterReleasesItsKey(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	var mu sync.Mutex
	var order []string
	_, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		if string(m.Data) == "0" {
			return errors.New("poison")
		}
		mu.Lock()
		order = append(order, string(m.Data))
		mu.Unlock()
		return nil
	}), herald.Backoff(10*time.Millisecond, 20*time.Millisecond), herald.MaxAttempts(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishBatch(ctx, "t", []herald.Event{{Key: "K", Data: []byte("0")}, {Key: "K", Data: []byte("1")}, {Key: "K", Data: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the key's later events", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if order[0] != "1" || order[1] != "2" {
		t.Fatalf("after the dead letter: %v, want [1 2]", order)
	}
	dls, err := c.DeadLetters(ctx, "t", herald.Query{})
	if err != nil || len(dls) != 1 || string(dls[0].Data) != "0" || dls[0].Attempts != 2 {
		t.Fatalf("dead letters: %+v %v", dls, err)
	}
}

// The attempt count of an event retried in place survives its consumer: the
// next owner of the partition delivers it as the next attempt.
func TestAttemptCountSurvivesTakeover(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t, 20*time.Second)
	third := make(chan struct{}, 1)
	a, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		if m.Attempt <= 2 {
			return errors.New("down")
		}
		third <- struct{}{} // the third attempt is cut short by the stop: not counted
		<-ctx.Done()
		return ctx.Err()
	}), herald.Consumer("a"), herald.Backoff(20*time.Millisecond, 40*time.Millisecond), herald.MaxAttempts(10))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "t", herald.Event{Key: "K", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-third:
	case <-ctx.Done():
		t.Fatal("no third attempt")
	}
	a.Stop()
	<-a.Done()
	got := make(chan int, 1)
	if _, err := c.Subscribe(ctx, "t", "g", herald.HandlerFunc(func(ctx context.Context, m *herald.Message) error {
		select {
		case got <- m.Attempt:
		default:
		}
		return nil
	}), herald.Consumer("b")); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-got:
		if at != 3 {
			t.Fatalf("after 2 failed attempts the next owner delivered attempt %d, want 3", at)
		}
	case <-ctx.Done():
		t.Fatal("the event never reached the next owner")
	}
}

package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

func subscribeCmd(e *env) *cobra.Command {
	var (
		group, from, execCmd, consumer, filter string
		count, concurrency, maxAttempts        int
		visibility, backoff, lease             time.Duration
		unordered                              bool
	)
	cmd := &cobra.Command{
		Use:   "subscribe TOPIC --group GROUP",
		Short: "Consume a topic as a member of a consumer group",
		Long: `Consume TOPIC in consumer GROUP and print each event (one line, or one JSON object with
--output json). With --exec, CMD runs through 'sh -c' for each event with the data on its
standard input and HERALD_* variables set; a non-zero exit is a failure: the event is retried
with backoff and dead-lettered after --max-attempts. --count N exits after N events reached a final outcome: handled, filtered out
by --filter, or dead-lettered.`,
		Example: `  herald subscribe orders --group billing --from beginning
  herald subscribe orders --group mailer --exec './send-mail.sh' --max-attempts 5`,
		Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			if group == "" {
				return usage("--group is required: the consumer group to join, e.g. --group billing")
			}
			if err := validateName("topic", topic); err != nil {
				return err
			}
			if err := validateName("group", group); err != nil {
				return err
			}
			fromOpt := herald.From(herald.StartNow)
			switch from {
			case "now":
			case "beginning":
				fromOpt = herald.From(herald.StartBeginning)
			default:
				target, err := herald.ParseSeekTarget(from)
				if err != nil {
					return usage("--from %q is not supported; use beginning, now, an RFC 3339 time (2026-01-02T15:04:05Z) or a position PARTITION/MS-SEQ", from)
				}
				fromOpt = herald.FromTarget(target)
			}
			if count < 0 {
				return usage("--count %d is negative", count)
			}
			opts := []herald.SubscribeOption{fromOpt, herald.Concurrency(concurrency),
				herald.MaxAttempts(maxAttempts), herald.Backoff(backoff, 5*time.Minute), herald.VisibilityTimeout(visibility)}
			if consumer != "" {
				opts = append(opts, herald.Consumer(consumer))
			}
			if filter != "" {
				opts = append(opts, herald.Filter(filter))
			}
			if unordered {
				opts = append(opts, herald.Unordered())
			}
			if lease != 0 {
				opts = append(opts, herald.LeaseTime(lease))
			}
			if err := herald.ValidateSubscribeOptions(opts...); err != nil {
				return err // before connecting: bad flags are the caller's to fix
			}
			ctx := cmd.Context()
			c, err := e.client(ctx)
			if err != nil {
				return interrupted(cmd, err)
			}
			defer closeClient(c)
			if count > 0 {
				// Read little ahead: reads of count at most, and an in-flight
				// window of count, but never fewer slots than partitions: a
				// reader blocked on an empty partition would hold them all and
				// the others would never read (MaxInFlight(1) on 4 partitions
				// delivered nothing).
				window, parts := min(count, 128), 64
				if info, err := c.TopicInfo(ctx, topic); err == nil {
					parts = len(info.Partitions)
				}
				opts = append(opts, herald.MaxInFlight(max(window, parts)), herald.ReadBatch(window))
			}
			var (
				outMu sync.Mutex
				subp  atomic.Pointer[herald.Subscription]
			)
			// final is the number of events that reached a final outcome:
			// handled, filtered out, or dead-lettered.
			final := func(s *herald.Subscription) int64 {
				st := s.Stats()
				return st.Handled + st.Filtered + st.DeadLettered
			}
			h := herald.HandlerFunc(func(hctx context.Context, m *herald.Message) error {
				if s := subp.Load(); count > 0 && s != nil && final(s) >= int64(count) {
					return herald.ErrRelease // enough: hand it back for another consumer
				}
				if execCmd != "" {
					return runExec(hctx, execCmd, m, e.io.Out, &outMu)
				}
				outMu.Lock()
				defer outMu.Unlock()
				if e.json() {
					j := toJSON(m.Topic, m.Partition, m.Position, m.Event)
					j.Attempt, j.Group = m.Attempt, m.Group
					e.emit(j, nil)
				} else {
					textLine(e.io.Out, m.Partition, m.Position, m.Event)
				}
				return nil
			})
			// Ctrl-C while the subscription starts ends the start (a Redis
			// that does not answer must not hold it). Once started, the
			// subscription outlives ctx: an interrupt drains it (in-flight
			// events finish and are acknowledged) instead of cutting it off.
			sctx, scancel := context.WithCancel(context.Background())
			defer scancel()
			stopStart := context.AfterFunc(ctx, scancel)
			sub, err := c.Subscribe(sctx, topic, group, h, opts...)
			if !stopStart() {
				return nil // interrupted while starting; a subscription that started stops with sctx
			}
			if err != nil {
				return err
			}
			subp.Store(sub)
			wctx, wcancel := context.WithCancel(context.Background())
			defer wcancel()
			go watchRedis(wctx, c, sub, e.io.Err, 250*time.Millisecond)
			if count > 0 {
				// The counters are read, not pushed: filtered events and
				// dead letters never return through the handler.
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
			wait:
				for final(sub) < int64(count) {
					select {
					case <-tick.C:
					case <-ctx.Done():
						break wait
					case <-sub.Done():
						break wait
					}
				}
			} else {
				select {
				case <-ctx.Done():
				case <-sub.Done():
				}
			}
			if err := drain(c, sub, drainTime); err != nil {
				// Stopping is what was asked (docs/cli.md: exit code 0);
				// what the drain left is delivered again.
				again := fmt.Sprintf("when the partitions' --lease (%s) runs out", lease)
				if unordered {
					again = fmt.Sprintf("to another consumer after --visibility (%s)", visibility)
				}
				fmt.Fprintf(e.io.Err, "herald: warning: stopped without finishing the drain (%v); events read and not yet acknowledged, "+
					"if any, stay pending and are delivered again %s\n", err, again)
			}
			return sub.Err()
		}),
	}
	fl := cmd.Flags()
	fl.StringVarP(&group, "group", "g", "", "consumer group (required)")
	fl.StringVar(&from, "from", "now", "where a new group starts: beginning, now, an RFC 3339 time or a position PARTITION/MS-SEQ")
	fl.StringVar(&filter, "filter", "", "CEL condition; other events are acknowledged unhandled (docs/routing.md)")
	fl.StringVar(&consumer, "consumer", "", "consumer name within the group (default host-pid-random)")
	fl.IntVarP(&count, "count", "c", 0, "exit after N events handled, filtered out or dead-lettered (0: run until interrupted)")
	fl.StringVar(&execCmd, "exec", "", "run CMD (sh -c) per event, data on stdin; non-zero exit = failure")
	fl.IntVar(&concurrency, "concurrency", 1, "events handled at once")
	fl.IntVar(&maxAttempts, "max-attempts", herald.DefaultMaxAttempts, "deliveries before an event is dead-lettered")
	fl.DurationVar(&backoff, "backoff", herald.DefaultRetryBackoff, "first retry delay (doubles per attempt, with jitter)")
	fl.DurationVar(&visibility, "visibility", herald.DefaultVisibilityTimeout, "time before a silent consumer's events are taken over (--unordered)")
	fl.BoolVar(&unordered, "unordered", false, "no per-key order: every consumer reads every partition (default: ordered by key, partitions leased)")
	fl.DurationVar(&lease, "lease", herald.DefaultLeaseTime, "how long a partition stays with a consumer that stopped renewing its lease (ordered)")
	return untimed(cmd) // runs until interrupted or --count: no --timeout
}

// runExec runs the --exec command for one event.
func runExec(ctx context.Context, command string, m *herald.Message, out io.Writer, mu *sync.Mutex) error {
	c := handlerCommand(ctx, command)
	c.Stdin = bytes.NewReader(m.Data)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	c.Env = append(os.Environ(),
		"HERALD_TOPIC="+m.Topic, "HERALD_GROUP="+m.Group, "HERALD_PARTITION="+strconv.Itoa(m.Partition),
		"HERALD_POSITION="+m.Position, "HERALD_EVENT_ID="+m.ID, "HERALD_TYPE="+m.Type, "HERALD_KEY="+m.Key,
		"HERALD_ATTEMPT="+strconv.Itoa(m.Attempt))
	err := c.Run()
	mu.Lock()
	_, werr := out.Write(stdout.Bytes())
	mu.Unlock()
	if werr != nil {
		return werr // not acknowledged: its output was lost
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		if msg == "" {
			return fmt.Errorf("exec %q: %v", command, err)
		}
		return fmt.Errorf("exec %q: %v: %s", command, err, msg)
	}
	return nil
}

// drainTime bounds the drain of a stopping subscribe (docs/cli.md).
const drainTime = 10 * time.Second

// drainProbe is how long Redis may take to answer a ping while a drain
// waits: when it does not, the acknowledgements cannot be sent and the
// drain stops waiting.
const drainProbe = time.Second

// drain drains sub for up to d, and less when Redis stops answering: the
// error says which.
func drain(c *herald.Client, sub *herald.Subscription, d time.Duration) error {
	base, gone := context.WithCancelCause(context.Background())
	defer gone(nil)
	ctx, cancel := context.WithTimeoutCause(base, d, fmt.Errorf("events still being handled after %s", d))
	defer cancel()
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if msg := redisFailure(ctx, c, drainProbe); msg != "" && ctx.Err() == nil {
				gone(fmt.Errorf("no answer from Redis: %s", msg))
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	if err := sub.Drain(ctx); err != nil {
		return context.Cause(ctx)
	}
	return nil
}

// redisFailure pings the nodes and returns the first node's error, "" when
// all answer within d.
func redisFailure(ctx context.Context, c *herald.Client, d time.Duration) string {
	hctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	h, err := c.Health(hctx)
	if err != nil {
		return err.Error()
	}
	for _, n := range h.Nodes {
		if n.Err != "" {
			return n.Addr + ": " + n.Err
		}
	}
	if len(h.Nodes) == 0 {
		return "no node answers"
	}
	return ""
}

// watchRedis reports on w when the subscription loses Redis and when Redis
// answers again. The library retries on its own and counts the errors it
// meets (Stats().RedisErrors); when that count grows, the nodes are pinged
// (Client.Health): a node that does not answer is a lost connection, and
// the first round where every node answers again is the reconnect. A Redis
// error while every node answers is not reported here.
func watchRedis(ctx context.Context, c *herald.Client, sub *herald.Subscription, w io.Writer, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var (
		last  = sub.Stats().RedisErrors
		down  bool
		since time.Time
	)
	failing := func() string { return redisFailure(ctx, c, 2*time.Second) }
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.Done():
			return
		case <-tick.C:
		}
		n := sub.Stats().RedisErrors
		grew := n > last
		last = n
		switch {
		case !down && grew:
			if msg := failing(); msg != "" && ctx.Err() == nil {
				down, since = true, time.Now()
				fmt.Fprintf(w, "herald: lost the connection to Redis (%s); retrying\n", msg)
			}
		case down:
			if failing() == "" && ctx.Err() == nil {
				down = false
				fmt.Fprintf(w, "herald: reconnected to Redis after %s\n", time.Since(since).Round(time.Millisecond))
			}
		}
	}
}

package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldbus/herald"
	"github.com/spf13/cobra"
)

// eventJSON is the JSON form of an event in CLI output (docs/cli.md).
type eventJSON struct {
	Topic       string            `json:"topic"`
	Partition   int               `json:"partition"`
	Position    string            `json:"position"`
	ID          string            `json:"id"`
	Type        string            `json:"type,omitempty"`
	Key         string            `json:"key,omitempty"`
	Source      string            `json:"source,omitempty"`
	Subject     string            `json:"subject,omitempty"`
	Time        time.Time         `json:"time"`
	ContentType string            `json:"content_type,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	Data        string            `json:"data"`
	Attempt     int               `json:"attempt,omitempty"`
	Group       string            `json:"group,omitempty"`
	Error       string            `json:"error,omitempty"`
	Attempts    int               `json:"attempts,omitempty"`
	Origin      string            `json:"origin,omitempty"`
}

func toJSON(topic string, partition int, position string, ev herald.Event) eventJSON {
	return eventJSON{Topic: topic, Partition: partition, Position: position, ID: ev.ID, Type: ev.Type, Key: ev.Key,
		Source: ev.Source, Subject: ev.Subject, Time: ev.Time, ContentType: ev.ContentType, Headers: ev.Headers, Data: string(ev.Data)}
}

// textLine is the one-line text form of an event.
func textLine(w io.Writer, partition int, position string, ev herald.Event) {
	fmt.Fprintf(w, "%d/%s", partition, position)
	if ev.Type != "" {
		fmt.Fprintf(w, " type=%s", ev.Type)
	}
	if ev.Key != "" {
		fmt.Fprintf(w, " key=%s", ev.Key)
	}
	fmt.Fprintf(w, " %s\n", strconv.Quote(string(ev.Data)))
}

func subscribeCmd(e *env) *cobra.Command {
	var (
		group, from, execCmd, consumer, filter string
		count, concurrency, maxAttempts        int
		visibility, backoff                    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "subscribe TOPIC --group GROUP",
		Short: "Consume a topic as a member of a consumer group",
		Long: `Consume TOPIC in consumer GROUP and print each event (one line, or one JSON object with
--output json). With --exec, CMD runs through 'sh -c' for each event with the data on its
standard input and HERALD_* variables set; a non-zero exit is a failure: the event is retried
with backoff and dead-lettered after --max-attempts. --count N exits after N handled events.`,
		Example: `  herald subscribe orders --group billing --from beginning
  herald subscribe orders --group mailer --exec './send-mail.sh' --max-attempts 5`,
		Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			if group == "" {
				return usage("--group is required: the consumer group to join, e.g. --group billing")
			}
			if err := herald.ValidateName("topic", topic); err != nil {
				return err
			}
			if err := herald.ValidateName("group", group); err != nil {
				return err
			}
			var start herald.Start
			switch from {
			case "now":
				start = herald.StartNow
			case "beginning":
				start = herald.StartBeginning
			default:
				return usage("--from %q is not supported; use beginning or now", from)
			}
			if count < 0 {
				return usage("--count %d is negative", count)
			}
			opts := []herald.SubscribeOption{herald.From(start), herald.Concurrency(concurrency),
				herald.MaxAttempts(maxAttempts), herald.Backoff(backoff, 5*time.Minute), herald.VisibilityTimeout(visibility)}
			if consumer != "" {
				opts = append(opts, herald.Consumer(consumer))
			}
			if filter != "" {
				opts = append(opts, herald.Filter(filter))
			}
			if count > 0 {
				window := min(count, 128)
				opts = append(opts, herald.MaxInFlight(window), herald.ReadBatch(window))
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			var (
				handled atomic.Int64
				outMu   sync.Mutex
				reached = make(chan struct{})
				once    sync.Once
			)
			h := herald.HandlerFunc(func(hctx context.Context, m *herald.Message) error {
				if count > 0 && handled.Load() >= int64(count) {
					return herald.ErrRelease // enough: hand it back for another consumer
				}
				if execCmd != "" {
					if err := runExec(hctx, execCmd, m, e.io.Out, &outMu); err != nil {
						return err
					}
				} else {
					outMu.Lock()
					if e.json() {
						j := toJSON(m.Topic, m.Partition, m.Position, m.Event)
						j.Attempt, j.Group = m.Attempt, m.Group
						e.emit(j, nil)
					} else {
						textLine(e.io.Out, m.Partition, m.Position, m.Event)
					}
					outMu.Unlock()
				}
				if n := handled.Add(1); count > 0 && n >= int64(count) {
					once.Do(func() { close(reached) })
				}
				return nil
			})
			// The subscription outlives ctx: an interrupt drains it (in-flight
			// events finish and are acknowledged) instead of cutting it off.
			sub, err := c.Subscribe(context.Background(), topic, group, h, opts...)
			if err != nil {
				return err
			}
			select {
			case <-reached:
			case <-ctx.Done():
			case <-sub.Done():
			}
			dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer dcancel()
			sub.Drain(dctx)
			return sub.Err()
		}),
	}
	fl := cmd.Flags()
	fl.StringVarP(&group, "group", "g", "", "consumer group (required)")
	fl.StringVar(&from, "from", "now", "where a new group starts: beginning or now")
	fl.StringVar(&filter, "filter", "", "CEL condition; other events are acknowledged unhandled (docs/routing.md)")
	fl.StringVar(&consumer, "consumer", "", "consumer name within the group (default host-pid-random)")
	fl.IntVarP(&count, "count", "c", 0, "exit after N handled events (0: run until interrupted)")
	fl.StringVar(&execCmd, "exec", "", "run CMD (sh -c) per event, data on stdin; non-zero exit = failure")
	fl.IntVar(&concurrency, "concurrency", 1, "events handled at once")
	fl.IntVar(&maxAttempts, "max-attempts", herald.DefaultMaxAttempts, "deliveries before an event is dead-lettered")
	fl.DurationVar(&backoff, "backoff", herald.DefaultRetryBackoff, "first retry delay (doubles per attempt, with jitter)")
	fl.DurationVar(&visibility, "visibility", herald.DefaultVisibilityTimeout, "time before a silent consumer's events are taken over")
	return cmd
}

// runExec runs the --exec command for one event.
func runExec(ctx context.Context, command string, m *herald.Message, out io.Writer, mu *sync.Mutex) error {
	c := exec.CommandContext(ctx, "sh", "-c", command)
	c.Stdin = bytes.NewReader(m.Data)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	c.Env = append(os.Environ(),
		"HERALD_TOPIC="+m.Topic, "HERALD_GROUP="+m.Group, "HERALD_PARTITION="+strconv.Itoa(m.Partition),
		"HERALD_POSITION="+m.Position, "HERALD_EVENT_ID="+m.ID, "HERALD_TYPE="+m.Type, "HERALD_KEY="+m.Key,
		"HERALD_ATTEMPT="+strconv.Itoa(m.Attempt))
	err := c.Run()
	mu.Lock()
	out.Write(stdout.Bytes())
	mu.Unlock()
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

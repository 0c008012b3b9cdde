package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

type eventFlags struct {
	key, typ, source, subject, contentType, id, rules string
	headers                                           []string
	partition                                         int
	durability                                        herald.Durability
	allowDegraded                                     bool
}

func (f *eventFlags) event(data []byte) (herald.Event, error) {
	ev := herald.Event{ID: f.id, Key: f.key, Type: f.typ, Source: f.source, Subject: f.subject, ContentType: f.contentType, Data: data}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return ev, usage("--header %q is not NAME=VALUE", h)
		}
		if ev.Headers == nil {
			ev.Headers = map[string]string{}
		}
		ev.Headers[k] = v
	}
	return ev, nil
}

func publishCmd(e *env) *cobra.Command {
	var f eventFlags
	var delay time.Duration // --delay / --at: internal/cli/scheduled.go
	var at string
	cmd := &cobra.Command{
		Use:   "publish TOPIC DATA | publish --rules RULES.yaml DATA",
		Short: "Publish an event (DATA '-' reads one event per line from stdin)",
		Long: `Publish DATA as one event to TOPIC and print its position (<partition>/<stream id>).
With DATA '-', every line of standard input is an event; lines are sent in pipelined
batches (the fast bulk path) and a summary is printed.`,
		Example: `  herald publish orders '{"id":1}' --key customer-7 --type order.created
  seq 1 1000 | herald publish numbers -
  herald publish --rules rules.yaml '{"category":"tech"}' --type article.published`,
		Args: func(cmd *cobra.Command, args []string) error {
			if f.rules != "" {
				return cobra.ExactArgs(1)(cmd, args)
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if f.rules != "" || args[1] != "-" {
				e.deadline.apply(cmd) // one event: --timeout bounds it (timeout.go)
			}
			if f.rules != "" {
				ev, err := f.event([]byte(args[0]))
				if err != nil {
					return err
				}
				if ev.ContentType == "" && json.Valid(ev.Data) {
					ev.ContentType = "application/json"
				}
				return publishRouted(e, cmd, f.rules, ev)
			}
			topic, data := args[0], args[1]
			if err := validateName("topic", topic); err != nil {
				return err
			}
			if data == "-" && f.id != "" {
				return usage("--id cannot be used with stdin input: every line would get the same id")
			}
			opts := []herald.PublishOption{herald.WithDurability(f.durability)}
			if f.allowDegraded {
				opts = append(opts, herald.AllowDegraded())
			}
			if cmd.Flags().Changed("partition") {
				if f.partition < 0 {
					return usage("--partition %d is negative", f.partition)
				}
				opts = append(opts, herald.ToPartition(f.partition))
			}
			due, delayed, err := dueFlag(cmd, delay, at)
			if err != nil {
				return err
			}
			if delayed {
				opts = append(opts, herald.At(due))
			}
			proto, err := f.event(nil)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if data == "-" {
				// Standard input may stay open for ever (tail -f log |): no
				// --timeout for the command, one for connecting and for each
				// block sent.
				cctx, ccancel := e.deadline.bound(ctx)
				c, err := e.client(cctx)
				ccancel()
				switch {
				case err != nil && timedOut(cctx):
					return e.deadline.error()
				case err != nil:
					return err
				}
				defer closeClient(c)
				var degraded int64
				n, err := publishLines(ctx, c, topic, proto, e.io.In, opts, &degraded, &e.deadline)
				if err != nil {
					return fmt.Errorf("%w (%d events published before the error)", err, n)
				}
				j := map[string]any{"topic": topic, "published": n}
				if degraded > 0 {
					j["degraded"] = degraded
				}
				e.emit(j, func(w io.Writer) {
					if degraded > 0 {
						fmt.Fprintf(w, "published %d events to %s (degraded: %d stored on the master without a replica's acknowledgement)\n", n, topic, degraded)
						return
					}
					fmt.Fprintf(w, "published %d events to %s\n", n, topic)
				})
				return nil
			}
			c, err := e.client(ctx)
			if err != nil {
				return err
			}
			defer closeClient(c)
			proto.Data = []byte(data)
			if delayed {
				return publishScheduled(e, ctx, c, topic, proto, due, opts)
			}
			pos, err := c.Publish(ctx, topic, proto, opts...)
			if err != nil {
				return err
			}
			j := map[string]any{"topic": topic, "partition": pos.Partition, "position": pos.ID, "duplicate": pos.Duplicate}
			if pos.Replicas >= 0 {
				j["replicas"], j["degraded"] = pos.Replicas, pos.Degraded
			}
			e.emit(j, func(w io.Writer) {
				switch {
				case pos.Duplicate:
					fmt.Fprintf(w, "%s (duplicate: already stored)\n", pos)
				case pos.Degraded:
					fmt.Fprintf(w, "%s (degraded: stored on the master, %d replica(s) acknowledged)\n", pos, pos.Replicas)
				default:
					fmt.Fprintln(w, pos)
				}
			})
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.key, "key", "k", "", "partition key: events with one key stay in order")
	fl.StringVarP(&f.typ, "type", "t", "", "event type, e.g. order.created")
	fl.StringVar(&f.source, "source", "", "event source")
	fl.StringVar(&f.subject, "subject", "", "event subject")
	fl.StringVar(&f.contentType, "content-type", "", "content type of DATA")
	fl.StringVar(&f.id, "id", "", "event id; publishing the same id again within the dedupe window stores it once")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "header NAME=VALUE (repeatable)")
	fl.IntVar(&f.partition, "partition", 0, "publish to this partition instead of choosing by key")
	fl.Var(&durabilityFlag{&f.durability}, "durability", "override the topic's durability: memory or replicated")
	fl.BoolVar(&f.allowDegraded, "allow-degraded", false, "with replicated durability, accept an event that no replica acknowledged (printed as degraded) instead of failing")
	fl.StringVar(&f.rules, "rules", "", "route the event with a rule file instead of naming a topic (docs/routing.md)")
	fl.DurationVar(&delay, "delay", 0, "deliver the event this long from now (e.g. 10s, 5m): it waits in the topic's schedule")
	fl.StringVar(&at, "at", "", "deliver the event at this RFC 3339 time (e.g. 2026-01-02T15:04:05Z)")
	return untimed(cmd) // with stdin input it runs as long as the input; the other forms apply --timeout
}

// stdinBatch is the most lines of standard input sent in one block: a block
// of 1000 fills the pipe (concurrent blocks measured no faster).
const stdinBatch = 1000

// stdinDelay is how long a line read from standard input may wait for
// others to share its block: input that pauses (tail -f log |) is sent
// within it, bulk input (seq 1 100000 |) fills blocks of stdinBatch.
const stdinDelay = 50 * time.Millisecond

// stdinLast bounds the sending of what was read when Ctrl-C stops the reading.
const stdinLast = 5 * time.Second

// publishLines publishes each line of r as an event, in blocks of up to
// stdinBatch sent one after the other, so the lines keep their order in
// each partition. A line waits at most stdinDelay for its block to be sent.
// When ctx ends (Ctrl-C) it stops reading, publishes what it has read and
// returns without an error. Each block is bounded by --timeout, not by
// ctx. degraded counts the events that were stored with fewer replica
// acknowledgements than asked (accepted with --allow-degraded).
func publishLines(ctx context.Context, c *herald.Client, topic string, proto herald.Event, r io.Reader, opts []herald.PublishOption,
	degraded *int64, d *deadline) (int64, error) {
	lines := make(chan []byte, stdinBatch)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop) // a reader blocked on the input is left to the process's exit
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 512<<20)
		n := 0
		for sc.Scan() {
			n++
			select {
			case lines <- bytes.Clone(sc.Bytes()):
			case <-stop:
				return
			}
		}
		if err := sc.Err(); err != nil {
			readErr <- fmt.Errorf("reading stdin at line %d: %w", n+1, err)
		}
	}()

	var total int64
	batch := make([]herald.Event, 0, stdinBatch)
	send := func(within time.Duration) error {
		if len(batch) == 0 {
			return nil
		}
		parent := context.WithoutCancel(ctx) // Ctrl-C does not cut a block off
		if within > 0 {
			var cancel context.CancelFunc
			parent, cancel = context.WithTimeout(parent, within)
			defer cancel()
		}
		bctx, cancel := d.bound(parent)
		defer cancel()
		ps, err := c.PublishBatch(bctx, topic, batch, opts...)
		total += int64(len(ps))
		for _, p := range ps {
			if p.Degraded {
				*degraded++
			}
		}
		batch = batch[:0]
		if err != nil && timedOut(bctx) {
			return d.error()
		}
		return err
	}
	add := func(line []byte) {
		ev := proto
		ev.Data = line
		batch = append(batch, ev)
	}
	due := time.NewTimer(time.Hour)
	due.Stop()
	defer due.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				if err := send(0); err != nil {
					return total, err
				}
				select {
				case err := <-readErr:
					return total, err
				default:
					return total, nil
				}
			}
			add(line)
			if len(batch) == 1 {
				due.Reset(stdinDelay)
			}
			if len(batch) == stdinBatch {
				due.Stop()
				if err := send(0); err != nil {
					return total, err
				}
			}
		case <-due.C:
			if err := send(0); err != nil {
				return total, err
			}
		case <-ctx.Done():
			// Ctrl-C: stop reading; publish what was read, a line the
			// reader holds included (it is handed over at once).
			grace := time.NewTimer(stdinDelay)
			defer grace.Stop()
			for {
				select {
				case line, ok := <-lines:
					if ok {
						add(line)
						if len(batch) < stdinBatch {
							continue
						}
					}
					if err := send(stdinLast); err != nil || !ok {
						return total, err
					}
				case <-grace.C:
					return total, send(stdinLast)
				}
			}
		}
	}
}

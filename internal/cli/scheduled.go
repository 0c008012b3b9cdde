package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

// dueFlag turns `herald publish --delay D` / `--at RFC3339` into a due time.
func dueFlag(cmd *cobra.Command, delay time.Duration, at string) (time.Time, bool, error) {
	fl := cmd.Flags()
	switch {
	case fl.Changed("delay") && fl.Changed("at"):
		return time.Time{}, false, usage("--delay and --at both set; use one")
	case fl.Changed("delay"):
		if delay < 0 {
			return time.Time{}, false, usage("--delay %s is negative; use a duration such as 10s", delay)
		}
		return time.Now().Add(delay), true, nil
	case fl.Changed("at"):
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return time.Time{}, false, usage("--at %q is not an RFC 3339 time; use e.g. 2026-01-02T15:04:05Z", at)
		}
		return t, true, nil
	}
	return time.Time{}, false, nil
}

// publishScheduled publishes one delayed event and prints its id, partition
// and due time.
func publishScheduled(e *env, ctx context.Context, c *herald.Client, topic string, ev herald.Event, due time.Time, opts []herald.PublishOption) error {
	s, err := c.Schedule(ctx, topic, ev, due, opts...)
	if err != nil {
		return err
	}
	e.emit(map[string]any{"topic": topic, "partition": s.Partition, "id": s.ID, "due": s.Due.UTC().Format(time.RFC3339Nano)}, func(w io.Writer) {
		fmt.Fprintf(w, "scheduled %s on partition %d, due %s\n", s.ID, s.Partition, s.Due.UTC().Format(time.RFC3339Nano))
	})
	return nil
}

func scheduledCmd(e *env) *cobra.Command {
	cmd := subcommands(&cobra.Command{Use: "scheduled", Short: "List or cancel delayed events that are not due yet"})
	var id string
	var limit int
	list := &cobra.Command{Use: "list TOPIC", Short: "List delayed events, the earliest due first", Args: namedArgs("topic"),
		Example: `  herald publish reminders 'call back' --delay 10m --id call-42
  herald scheduled list reminders
  herald scheduled cancel reminders call-42`,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if limit < 1 || limit > 10000 {
				return usage("--limit %d out of range; use 1..10000", limit)
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			evs, total, err := c.ScheduledEvents(cmd.Context(), args[0], herald.ScheduleFilter{ID: id, Limit: limit})
			if err != nil {
				return err
			}
			if e.json() {
				for _, s := range evs {
					j := toJSON(args[0], s.Partition, "", s.Event)
					e.emit(map[string]any{"event": j, "due": s.Due.UTC().Format(time.RFC3339Nano)}, nil)
				}
				return nil
			}
			if len(evs) == 0 {
				fmt.Fprintln(e.io.Out, "(empty list)")
				return nil
			}
			table(e.io.Out, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "DUE\tIN\tPARTITION\tID\tKEY\tTYPE\tDATA")
				for _, s := range evs {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Due.UTC().Format(time.RFC3339Nano), time.Until(s.Due).Round(time.Millisecond),
						s.Partition, s.ID, s.Key, s.Type, strconv.Quote(clip(string(s.Data), 60)))
				}
			})
			if int64(len(evs)) < total && id == "" {
				fmt.Fprintf(e.io.Out, "(%d of %d shown; use --limit)\n", len(evs), total)
			}
			return nil
		})}
	list.Flags().StringVar(&id, "id", "", "only this event id")
	list.Flags().IntVarP(&limit, "limit", "n", 100, "most events shown")
	cancel := &cobra.Command{Use: "cancel TOPIC ID", Short: "Cancel a delayed event before it is due", Args: namedArgs("topic", ""),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
			ok, err := c.CancelScheduled(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no delayed event %q waits on topic %s (delivered, cancelled before, or never scheduled)", args[1], args[0])
			}
			e.emit(map[string]any{"topic": args[0], "id": args[1], "cancelled": true}, func(w io.Writer) {
				fmt.Fprintf(w, "cancelled %s\n", args[1])
			})
			return nil
		})}
	cmd.AddCommand(list, cancel)
	return cmd
}

// clip shortens s to n bytes for a table cell.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

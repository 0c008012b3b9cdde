package cli

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/heraldbus/herald"
	"github.com/spf13/cobra"
)

func table(w io.Writer, f func(tw *tabwriter.Writer)) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	f(tw)
	tw.Flush()
}

func topicsCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "topics", Short: "List topics", Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ts, err := c.Topics(cmd.Context())
			if err != nil {
				return err
			}
			if e.json() {
				out := make([]map[string]any, len(ts))
				for i, t := range ts {
					out[i] = topicJSON(t)
				}
				e.emit(out, nil)
				return nil
			}
			if len(ts) == 0 {
				fmt.Fprintln(e.io.Out, "(empty list)")
				return nil
			}
			table(e.io.Out, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tEVENTS\tDEAD LETTERS\tMEMORY")
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", t.Name, t.Config.Partitions, t.Length, t.DeadLetters, bytesHuman(t.MemoryBytes))
				}
			})
			return nil
		})}
}

func topicJSON(t herald.TopicInfo) map[string]any {
	parts := make([]map[string]any, len(t.Partitions))
	for i, p := range t.Partitions {
		parts[i] = map[string]any{"partition": p.Partition, "stream": p.Stream, "slot": p.Slot, "node": p.Node, "length": p.Length, "first_id": p.FirstID,
			"last_id": p.LastID, "memory_bytes": p.MemoryBytes, "dead_letters": p.DeadLetters}
	}
	return map[string]any{"name": t.Name, "partitions": t.Config.Partitions, "length": t.Length, "memory_bytes": t.MemoryBytes,
		"dead_letters": t.DeadLetters, "created": t.Created, "max_len": t.Config.MaxLen, "max_age": t.Config.MaxAge.String(),
		"dedupe_window": t.Config.DedupeWindow.String(), "dedupe_all": t.Config.DedupeAll, "durability": t.Config.Durability.String(), "max_event_bytes": t.Config.MaxEventBytes,
		"partition_info": parts}
}

func bytesHuman(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return strconv.FormatInt(n, 10) + "B"
}

func topicCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "topic", Short: "Create, describe or delete a topic"}
	var cfg herald.TopicConfig
	create := &cobra.Command{Use: "create TOPIC", Short: "Create a topic (no change if it exists)", Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := herald.ValidateName("topic", args[0]); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.CreateTopic(cmd.Context(), args[0], cfg); err != nil {
				return err
			}
			t, err := c.TopicInfo(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			e.emit(topicJSON(t), func(w io.Writer) { fmt.Fprintf(w, "OK %s (%d partitions)\n", t.Name, t.Config.Partitions) })
			return nil
		})}
	fl := create.Flags()
	fl.IntVarP(&cfg.Partitions, "partitions", "p", 0, "number of partitions (default 1)")
	fl.Int64Var(&cfg.MaxLen, "max-len", 0, "keep about this many events per partition (0: no limit)")
	fl.DurationVar(&cfg.MaxAge, "max-age", 0, "drop events older than this, e.g. 168h (0: no limit)")
	fl.DurationVar(&cfg.DedupeWindow, "dedupe-window", 0, "how long caller-set ids are remembered (default 2m)")
	fl.BoolVar(&cfg.DedupeAll, "dedupe-all", false, "deduplicate every event by id, not only caller-set ids")
	fl.IntVar(&cfg.MaxEventBytes, "max-event-bytes", 0, "largest event accepted (default 1 MiB)")
	fl.Var(&durabilityFlag{&cfg.Durability}, "durability", "memory (ack when the master has it) or replicated (ack after WAIT for a replica)")

	info := &cobra.Command{Use: "info TOPIC", Short: "Describe a topic and its partitions", Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			t, err := c.TopicInfo(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			e.emit(topicJSON(t), func(w io.Writer) {
				fmt.Fprintf(w, "topic:          %s\npartitions:     %d\nevents:         %d\ndead letters:   %d\nmemory:         %s\n",
					t.Name, t.Config.Partitions, t.Length, t.DeadLetters, bytesHuman(t.MemoryBytes))
				fmt.Fprintf(w, "retention:      max-len %d, max-age %s\ndedupe window:  %s (all events: %v)\nmax event size: %d bytes\ndurability:     %s\ncreated:        %s\n\n",
					t.Config.MaxLen, t.Config.MaxAge, t.Config.DedupeWindow, t.Config.DedupeAll, t.Config.MaxEventBytes, t.Config.Durability, t.Created.Format(time.RFC3339))
				table(w, func(tw *tabwriter.Writer) {
					fmt.Fprintln(tw, "PARTITION\tSTREAM\tSLOT\tNODE\tEVENTS\tFIRST\tLAST\tDEAD LETTERS\tMEMORY")
					for _, p := range t.Partitions {
						fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%s\t%s\t%d\t%s\n", p.Partition, p.Stream, p.Slot, p.Node, p.Length, dash(p.FirstID), dash(p.LastID), p.DeadLetters, bytesHuman(p.MemoryBytes))
					}
				})
			})
			return nil
		})}

	var yes bool
	del := &cobra.Command{Use: "delete TOPIC", Short: "Delete a topic with its events, groups and dead letters", Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.DeleteTopic(cmd.Context(), args[0]); err != nil {
				return err
			}
			e.emit(map[string]any{"deleted": args[0]}, func(w io.Writer) { fmt.Fprintln(w, "OK") })
			return nil
		})}
	del.Flags().BoolVarP(&yes, "yes", "y", false, "accepted for scripts; deletion does not ask")
	cmd.AddCommand(create, info, del)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func groupsCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "groups TOPIC", Short: "List the consumer groups of a topic", Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			gs, err := c.Groups(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.json() {
				out := make([]map[string]any, len(gs))
				for i, g := range gs {
					out[i] = map[string]any{"name": g.Name, "consumers": g.Consumers, "pending": g.Pending, "lag": g.Lag,
						"scheduled_retries": g.ScheduledRetries, "oldest_pending_seconds": g.OldestPending.Seconds()}
				}
				e.emit(out, nil)
				return nil
			}
			if len(gs) == 0 {
				fmt.Fprintln(e.io.Out, "(empty list)")
				return nil
			}
			table(e.io.Out, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "GROUP\tCONSUMERS\tPENDING\tLAG\tRETRIES\tOLDEST PENDING")
				for _, g := range gs {
					lag := strconv.FormatInt(g.Lag, 10)
					if g.Lag < 0 {
						lag = "?"
					}
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\n", g.Name, g.Consumers, g.Pending, lag, g.ScheduledRetries, g.OldestPending.Round(time.Millisecond))
				}
			})
			return nil
		})}
}

type filterFlags struct {
	from, to, group string
	limit           int
	partitions      []int
	ids             []string
}

func (f *filterFlags) filter() herald.Query {
	return herald.Query{From: f.from, To: f.to, Limit: f.limit, Group: f.group, Partitions: f.partitions, IDs: f.ids}
}

func (f *filterFlags) bind(cmd *cobra.Command, dead bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "first position (inclusive), <ms>-<seq> or <ms>")
	fl.StringVar(&f.to, "to", "", "last position (inclusive)")
	fl.IntVarP(&f.limit, "limit", "n", 100, "most entries")
	fl.IntSliceVar(&f.partitions, "partition", nil, "only these partitions (repeatable)")
	if dead {
		fl.StringVarP(&f.group, "group", "g", "", "only dead letters of this group")
		fl.StringArrayVar(&f.ids, "id", nil, "only this dead letter, <partition>/<id> (repeatable)")
	}
}

func eventsCmd(e *env) *cobra.Command {
	var f filterFlags
	cmd := &cobra.Command{Use: "events TOPIC", Short: "Read stored events (all partitions, in position order)", Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if f.limit <= 0 {
				return usage("--limit %d: use a positive number", f.limit)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			evs, err := c.Events(cmd.Context(), args[0], f.filter())
			if err != nil {
				return err
			}
			for _, ev := range evs {
				e.emit(toJSON(ev.Topic, ev.Partition, ev.Position, ev.Event), func(w io.Writer) { textLine(w, ev.Partition, ev.Position, ev.Event) })
			}
			if len(evs) == 0 && !e.json() {
				fmt.Fprintln(e.io.Out, "(empty list)")
			}
			return nil
		})}
	f.bind(cmd, false)
	return cmd
}

func dlqCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "List, redrive or delete dead letters"}
	var lf, rf, df filterFlags
	list := &cobra.Command{Use: "list TOPIC", Short: "List dead letters", Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			dls, err := c.DeadLetters(cmd.Context(), args[0], lf.filter())
			if err != nil {
				return err
			}
			for _, d := range dls {
				j := toJSON(d.Topic, d.Partition, d.Position, d.Event)
				j.Group, j.Error, j.Attempts, j.Origin = d.Group, d.Error, d.Attempts, d.Origin
				e.emit(j, func(w io.Writer) {
					fmt.Fprintf(w, "%d/%s group=%s attempts=%d origin=%s error=%s data=%s\n", d.Partition, d.Position, d.Group, d.Attempts,
						d.Origin, strconv.Quote(d.Error), strconv.Quote(string(d.Data)))
				})
			}
			if len(dls) == 0 && !e.json() {
				fmt.Fprintln(e.io.Out, "(empty list)")
			}
			return nil
		})}
	lf.bind(list, true)
	redrive := &cobra.Command{Use: "redrive TOPIC", Short: "Send dead letters back to their group (attempts reset)", Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.RedriveDeadLetters(cmd.Context(), args[0], rf.filter())
			if err != nil {
				return err
			}
			e.emit(map[string]any{"redriven": n}, func(w io.Writer) { fmt.Fprintf(w, "(integer) %d\n", n) })
			return nil
		})}
	rf.bind(redrive, true)
	redrive.Flags().Lookup("limit").DefValue = "1000"
	rf.limit = 1000
	del := &cobra.Command{Use: "delete TOPIC", Short: "Delete dead letters", Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := c.DeleteDeadLetters(cmd.Context(), args[0], df.filter())
			if err != nil {
				return err
			}
			e.emit(map[string]any{"deleted": n}, func(w io.Writer) { fmt.Fprintf(w, "(integer) %d\n", n) })
			return nil
		})}
	df.bind(del, true)
	del.Flags().Lookup("limit").DefValue = "1000"
	df.limit = 1000
	cmd.AddCommand(list, redrive, del)
	return cmd
}

// durabilityFlag parses --durability.
type durabilityFlag struct{ d *herald.Durability }

func (f *durabilityFlag) String() string {
	if f.d == nil || *f.d == herald.DurabilityDefault {
		return "memory"
	}
	return f.d.String()
}

func (f *durabilityFlag) Set(s string) error {
	d, err := herald.ParseDurability(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

func (f *durabilityFlag) Type() string { return "memory|replicated" }

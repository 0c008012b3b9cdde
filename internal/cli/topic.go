package cli

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

func topicsCmd(e *env) *cobra.Command {
	return &cobra.Command{Use: "topics", Short: "List topics", Args: cobra.NoArgs,
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
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
	cmd := subcommands(&cobra.Command{Use: "topic", Short: "Create, describe or delete a topic"})
	var cfg herald.TopicConfig
	create := &cobra.Command{Use: "create TOPIC", Short: "Create a topic (no change if it exists)", Args: cobra.ExactArgs(1),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := validateName("topic", args[0]); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err // before connecting: bad flags are the caller's to fix
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
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
	fl.IntVarP(&cfg.Partitions, "partitions", "p", 0, "number of partitions (default 1 on a standalone Redis, 2 per master on a cluster)")
	fl.Int64Var(&cfg.MaxLen, "max-len", 0, "keep about this many events per partition (0: no limit)")
	fl.DurationVar(&cfg.MaxAge, "max-age", 0, "drop events older than this, e.g. 168h (0: no limit)")
	fl.DurationVar(&cfg.DedupeWindow, "dedupe-window", 0, "how long caller-set ids are remembered (default 2m)")
	fl.BoolVar(&cfg.DedupeAll, "dedupe-all", false, "deduplicate every event by id, not only caller-set ids")
	fl.BoolVar(&cfg.TrimAcked, "trim-acked", false, "trim events once every consumer group acknowledged them (max-len and max-age stay hard caps)")
	fl.IntVar(&cfg.MaxEventBytes, "max-event-bytes", 0, "largest event accepted (default 1 MiB)")
	fl.Var(&durabilityFlag{&cfg.Durability}, "durability", "memory (ack when the master has it) or replicated (ack after WAIT for a replica)")

	info := &cobra.Command{Use: "info TOPIC", Short: "Describe a topic and its partitions", Args: namedArgs("topic"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
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
	del := &cobra.Command{Use: "delete TOPIC", Short: "Delete a topic with its events, groups and dead letters", Args: namedArgs("topic"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
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

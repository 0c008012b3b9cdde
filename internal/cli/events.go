package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald"
)

type filterFlags struct {
	from, to, group string
	limit           int
	partitions      []int
	ids             []string
}

// filter is the query of the flags. Dead letters selected by --id are
// looked for in their partitions only, so that a partition that does not
// exist is an error (exit 2), as with --partition.
func (f *filterFlags) filter() herald.Query {
	q := herald.Query{From: f.from, To: f.to, Limit: f.limit, Group: f.group, Partitions: f.partitions, IDs: f.ids}
	if len(q.Partitions) == 0 && len(q.IDs) > 0 {
		for _, id := range q.IDs {
			if p, err := herald.ParsePosition(id); err == nil && !slices.Contains(q.Partitions, p.Partition) {
				q.Partitions = append(q.Partitions, p.Partition)
			}
		}
		slices.Sort(q.Partitions)
	}
	return q
}

// check refuses bad flags before anything connects.
func (f *filterFlags) check() error {
	if f.limit <= 0 {
		return usage("--limit %d: use a positive number", f.limit)
	}
	if f.group != "" {
		if err := validateName("group", f.group); err != nil {
			return err
		}
	}
	q := f.filter()
	if err := q.Validate(); err != nil {
		return err
	}
	if len(f.partitions) > 0 {
		for _, id := range q.IDs {
			if p, _ := herald.ParsePosition(id); !slices.Contains(f.partitions, p.Partition) {
				return usage("--id %s is on partition %d, which --partition %s leaves out; drop --partition or add %d to it",
					id, p.Partition, strings.Trim(strings.Join(strings.Fields(fmt.Sprint(f.partitions)), ","), "[]"), p.Partition)
			}
		}
	}
	return nil
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
	cmd := &cobra.Command{Use: "events TOPIC", Short: "Read stored events (all partitions, in position order)", Args: namedArgs("topic"),
		RunE: wrap(func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			c, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer closeClient(c)
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
